// Owns: the route table: method + path pattern -> parser that builds a typed Action.
// Must not: run services (dispatch.ts does) or write responses (server.ts does).
import { KilnError } from '../errors.js';
import { BodyReader, type Action } from './actions.js';

export interface RequestParts {
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
}

export interface Route {
  method: 'GET' | 'POST' | 'DELETE' | 'PUT';
  pattern: string;
  /** true when the route accepts a body; GET/DELETE routes refuse one. */
  hasBody?: boolean;
  /** true when the action can stream NDJSON progress (Accept: application/x-ndjson). */
  streams?: boolean;
  parse(parts: RequestParts): Action;
}

function noBody(parts: RequestParts): void {
  new BodyReader(parts.body).done();
}

export const ROUTES: Route[] = [
  { method: 'GET', pattern: '/v1/health', parse: (p) => (noBody(p), { kind: 'health' }) },
  { method: 'GET', pattern: '/v1/status', parse: (p) => (noBody(p), { kind: 'status' }) },
  { method: 'GET', pattern: '/metrics', parse: (p) => (noBody(p), { kind: 'metrics' }) },
];

export interface RouteMatch {
  route: Route;
  params: Record<string, string>;
}

function matchPattern(pattern: string, path: string): Record<string, string> | undefined {
  const want = pattern.split('/');
  const got = path.split('/');
  if (want.length !== got.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    const g = got[i]!;
    if (w.startsWith(':')) {
      let value: string;
      try {
        value = decodeURIComponent(g);
      } catch {
        return undefined;
      }
      if (!value) return undefined;
      params[w.slice(1)] = value;
    } else if (w !== g) return undefined;
  }
  return params;
}

export function matchRoute(routes: readonly Route[], method: string, path: string): RouteMatch {
  let pathMatched = false;
  for (const route of routes) {
    const params = matchPattern(route.pattern, path);
    if (!params) continue;
    pathMatched = true;
    if (route.method === method) return { route, params };
  }
  if (pathMatched) throw new KilnError('KILN_BAD_REQUEST', `method ${method} is not allowed on ${path}`, { method, path });
  throw new KilnError('KILN_NOT_FOUND', `no route ${method} ${path}`, { method, path });
}
