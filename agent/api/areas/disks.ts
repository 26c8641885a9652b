// Owns: the disks area of the API: POST /v1/disks ({target, image: REF, size?, mode?}) for
// `kiln disk create`, parsed into a typed action (unknown fields refused), streaming progress.
// Must not: see node:http or touch files; agent/disks/standalone.ts does the work.
import type { AreaHandler, Progress, Reply, Route } from '../types.js';
import { BodyReader } from '../actions.js';
import { KilnError } from '../../errors.js';
import type { StandaloneDiskJson, StandaloneDiskRequest } from '../../disks/standalone.js';

export type DiskAction = { kind: 'disk.create'; req: StandaloneDiskRequest };

export interface DiskApi {
  create(req: StandaloneDiskRequest, progress?: Progress): Promise<StandaloneDiskJson>;
}

export interface DiskServices {
  disks?: DiskApi;
}

const TiB = 1024 ** 4;

export function parseDiskCreateBody(body: unknown): StandaloneDiskRequest {
  const b = new BodyReader(body, 'disk create body');
  const target = b.string('target', { required: true, max: 4096 });
  if (!target.startsWith('/')) throw new KilnError('KILN_BAD_REQUEST', 'target must be an absolute path (a file, or a block device under /dev)', { field: 'target' });
  const image = b.string('image', { required: true, max: 80, pattern: /^(sha256:)?[0-9a-f]{1,64}$/ });
  const req: StandaloneDiskRequest = { target, image };
  const size = b.number('size', { min: 1, max: 64 * TiB });
  if (size !== undefined) req.sizeBytes = size;
  const mode = b.oneOf('mode', ['overlay', 'flat', 'volume'] as const);
  if (mode !== undefined) req.mode = mode;
  b.done();
  return req;
}

export const diskRoutes: Route[] = [
  { method: 'POST', pattern: '/v1/disks', streams: true, parse: (p) => ({ kind: 'disk.create', req: parseDiskCreateBody(p.body) }) },
];

export function isDiskAction(action: { kind: string }): action is DiskAction {
  return action.kind.startsWith('disk.');
}

export const handleDisks: AreaHandler<DiskAction, DiskServices> = async (action, services, progress): Promise<Reply> => {
  const svc = services.disks;
  if (!svc) throw new KilnError('KILN_UNAVAILABLE', 'the disk service is not available in this kilnd');
  switch (action.kind) {
    case 'disk.create':
      return { status: 201, body: await svc.create(action.req, progress) };
  }
};
