// Owns: the route table (every area's routes) and matching method + path to a route.
// Must not: run services (dispatch.ts does) or write responses (server.ts does).
import { KilnError } from '../errors.js';
import type { Route } from './types.js';
import { systemRoutes } from './areas/system.js';
import { instanceRoutes } from './areas/instances.js';
import { diskRoutes } from './areas/disks.js';
import { imageRoutes } from './areas/images.js';

export type { Route, RequestParts } from './types.js';

// One line per API area.
export const ROUTES: Route[] = [
  ...systemRoutes,
  ...instanceRoutes,
  ...diskRoutes,
  ...imageRoutes,
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
