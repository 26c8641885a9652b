// Owns: the instances area of the API: GET|POST /v1/instances, GET|DELETE /v1/instances/:name,
// POST /v1/instances/:name/start|stop; parsing each request into a typed action (unknown fields
// refused) and handing it to the instance service. POST /v1/instances streams NDJSON progress.
// Must not: see node:http or touch files; provisioning itself is agent/instances/.
import type { InstanceJson } from '../protocol.js';
import type { AreaHandler, Progress, Reply, Route } from '../types.js';
import { BodyReader, checkName } from '../actions.js';
import { KilnError } from '../../errors.js';
import type { ProvisionRequest } from '../../instances/spec.js';

/** The create body: DESIGN.md's `kiln instance create` flags, files sent as their contents. */
export type CreateInstanceBody = ProvisionRequest;

export type InstanceAction =
  | { kind: 'instance.list' }
  | { kind: 'instance.create'; spec: CreateInstanceBody }
  | { kind: 'instance.show'; name: string }
  | { kind: 'instance.remove'; name: string }
  | { kind: 'instance.start'; name: string }
  | { kind: 'instance.stop'; name: string; force: boolean };

/** What the area needs of agent/instances InstanceService. */
export interface InstanceApi {
  provision(spec: CreateInstanceBody, progress?: Progress): Promise<{ instance: InstanceJson; created: boolean }>;
  list(): Promise<InstanceJson[]>;
  show(name: string): Promise<InstanceJson>;
  start(name: string): Promise<InstanceJson>;
  stop(name: string, o: { force?: boolean }): Promise<InstanceJson>;
  remove(name: string): Promise<void>;
}

export interface InstanceServices {
  instances?: InstanceApi;
}

const TiB = 1024 ** 4;
const MAX_TEXT = 16 * 1024 * 1024;

export function parseCreateBody(body: unknown): CreateInstanceBody {
  const b = new BodyReader(body, 'instance create body');
  const spec: CreateInstanceBody = {
    name: checkName(b.string('name', { required: true, max: 63 })),
    image: b.string('image', { required: true, max: 4096 }),
  };
  const set = <K extends keyof CreateInstanceBody>(key: K, value: CreateInstanceBody[K] | undefined) => {
    if (value !== undefined) spec[key] = value;
  };
  set('checksum', b.string('checksum', { max: 300, pattern: /^[a-z0-9]+:[0-9a-fA-F]+$/ }));
  set('diskFormat', b.string('diskFormat', { max: 16, pattern: /^[a-z0-9]+$/ }));
  set('minDisk', b.number('minDisk', { min: 0, max: 64 * TiB }));
  set('minRam', b.number('minRam', { min: 0, max: 16 * TiB }));
  set('diskSize', b.number('diskSize', { min: 1024 * 1024, max: 64 * TiB }));
  set('diskMode', b.oneOf('diskMode', ['overlay', 'flat'] as const));
  set('bootVolume', b.string('bootVolume', { max: 4096 }));
  set('memory', b.number('memory', { min: 16 * 1024 * 1024, max: 16 * TiB }));
  set('vcpus', b.number('vcpus', { min: 1, max: 256 }));
  set('userData', b.string('userData', { max: MAX_TEXT }));
  set('sshKey', b.string('sshKey', { max: 256 * 1024 }));
  set('networkConfig', b.string('networkConfig', { max: MAX_TEXT }));
  set('seed', b.oneOf('seed', ['nocloud', 'configdrive'] as const));
  set('network', b.string('network', { max: 80 }));
  set('wait', b.oneOf('wait', ['running', 'ssh'] as const));
  set('sshUser', b.string('sshUser', { max: 32, pattern: /^[a-z_][a-z0-9_-]*$/ }));
  b.done();
  return spec;
}

const noBody = (body: unknown) => new BodyReader(body).done();
const nameParam = (params: Record<string, string>) => checkName(params.name ?? '', 'instance name');

export const instanceRoutes: Route[] = [
  { method: 'GET', pattern: '/v1/instances', parse: (p) => (noBody(p.body), { kind: 'instance.list' }) },
  { method: 'POST', pattern: '/v1/instances', streams: true, parse: (p) => ({ kind: 'instance.create', spec: parseCreateBody(p.body) }) },
  { method: 'GET', pattern: '/v1/instances/:name', parse: (p) => (noBody(p.body), { kind: 'instance.show', name: nameParam(p.params) }) },
  { method: 'DELETE', pattern: '/v1/instances/:name', parse: (p) => (noBody(p.body), { kind: 'instance.remove', name: nameParam(p.params) }) },
  { method: 'POST', pattern: '/v1/instances/:name/start', parse: (p) => (noBody(p.body), { kind: 'instance.start', name: nameParam(p.params) }) },
  {
    method: 'POST', pattern: '/v1/instances/:name/stop',
    parse: (p) => {
      const b = new BodyReader(p.body, 'stop body');
      const force = b.bool('force') ?? false;
      b.done();
      return { kind: 'instance.stop', name: nameParam(p.params), force };
    },
  },
];

export function isInstanceAction(action: { kind: string }): action is InstanceAction {
  return action.kind.startsWith('instance.');
}

export const handleInstances: AreaHandler<InstanceAction, InstanceServices> = async (action, services, progress): Promise<Reply> => {
  const svc = services.instances;
  if (!svc) throw new KilnError('KILN_UNAVAILABLE', 'the instance service is not available in this kilnd');
  switch (action.kind) {
    case 'instance.list':
      return { status: 200, body: await svc.list() };
    case 'instance.create': {
      const { instance, created } = await svc.provision(action.spec, progress);
      return { status: created ? 201 : 200, body: instance };
    }
    case 'instance.show':
      return { status: 200, body: await svc.show(action.name) };
    case 'instance.remove':
      await svc.remove(action.name);
      return { status: 200, body: { removed: action.name } };
    case 'instance.start':
      return { status: 200, body: await svc.start(action.name) };
    case 'instance.stop':
      return { status: 200, body: await svc.stop(action.name, { force: action.force }) };
  }
};
