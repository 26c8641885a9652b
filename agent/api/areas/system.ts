// Owns: the system area of the API: health, status, metrics routes, their actions and handling.
// Must not: see node:http.
import type { MetricsRegistry } from '../../metrics.js';
import type { HealthJson, StatusJson } from '../protocol.js';
import type { AreaHandler, Reply, Route } from '../types.js';
import { BodyReader } from '../actions.js';

export type SystemAction = { kind: 'health' } | { kind: 'status' } | { kind: 'metrics' };

export interface SystemService {
  health(): HealthJson;
  status(): Promise<StatusJson>;
}

export interface SystemServices {
  system: SystemService;
  metrics: MetricsRegistry;
}

const noBody = (body: unknown) => new BodyReader(body).done();

export const systemRoutes: Route[] = [
  { method: 'GET', pattern: '/v1/health', parse: (p) => (noBody(p.body), { kind: 'health' }) },
  { method: 'GET', pattern: '/v1/status', parse: (p) => (noBody(p.body), { kind: 'status' }) },
  { method: 'GET', pattern: '/metrics', parse: (p) => (noBody(p.body), { kind: 'metrics' }) },
];

export const handleSystem: AreaHandler<SystemAction, SystemServices> = async (action, services): Promise<Reply> => {
  switch (action.kind) {
    case 'health':
      return { status: 200, body: services.system.health() };
    case 'status':
      return { status: 200, body: await services.system.status() };
    case 'metrics':
      return { status: 200, body: services.metrics.render(), contentType: 'text/plain; version=0.0.4' };
  }
};
