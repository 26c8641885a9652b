// Owns: running a typed Action against the services that main.ts wired, and the interfaces those
// services present to the API. Must not: see HTTP (server.ts) or parse input (routes.ts).
import type { MetricsRegistry } from '../metrics.js';
import type { Action } from './actions.js';
import type { HealthJson, StatusJson } from './protocol.js';

export interface Progress {
  (event: { step: string; done?: number; total?: number; rate?: number; message?: string }): void;
}

export interface SystemService {
  health(): HealthJson;
  status(): Promise<StatusJson>;
}

export interface ApiServices {
  system: SystemService;
  metrics: MetricsRegistry;
}

export interface Reply {
  status: number;
  body: unknown;
  /** Plain text bodies (Prometheus) instead of JSON. */
  contentType?: string;
}

export async function dispatch(action: Action, services: ApiServices, _progress: Progress): Promise<Reply> {
  switch (action.kind) {
    case 'health':
      return { status: 200, body: services.system.health() };
    case 'status':
      return { status: 200, body: await services.system.status() };
    case 'metrics':
      return { status: 200, body: services.metrics.render(), contentType: 'text/plain; version=0.0.4' };
  }
}
