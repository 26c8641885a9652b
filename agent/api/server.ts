// Owns: the HTTP server on the unix socket: match route -> read body -> parse Action -> dispatch
// -> reply (JSON or NDJSON), plus request logging and error-by-code metrics.
// Must not: implement services or socket file handling (socket.ts).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from '../log.js';
import { toKilnError } from '../errors.js';
import { dispatch, type Action, type ApiServices } from './dispatch.js';
import { NdjsonStream, readJsonBody, sendError, sendJson, wantsStream } from './http.js';
import { matchRoute, ROUTES, type Route } from './routes.js';

export interface ApiServerOptions {
  services: ApiServices;
  log: Logger;
  bodyMaxBytes: number;
  routes?: readonly Route[];
}

export function createApiServer(options: ApiServerOptions): Server {
  const log = options.log.child({ component: 'api' });
  const routes = options.routes ?? ROUTES;
  const errors = options.services.metrics.counter('kiln_api_errors_total', 'API errors by code');
  const requests = options.services.metrics.histogram('kiln_api_request_seconds', 'API request durations by route');

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const started = process.hrtime.bigint();
    let routeName = 'unmatched';
    let stream: NdjsonStream | undefined;
    try {
      const url = new URL(req.url ?? '/', 'http://kiln');
      const { route, params } = matchRoute(routes, req.method ?? 'GET', url.pathname);
      routeName = `${route.method} ${route.pattern}`;
      const body = await readJsonBody(req, options.bodyMaxBytes);
      const action = route.parse({ params, query: url.searchParams, body }) as Action;
      if (route.streams && wantsStream(req)) stream = new NdjsonStream(res);
      const reply = await dispatch(action, options.services, (event) => stream?.progress(event));
      if (stream) stream.result(reply.body);
      else if (reply.contentType) {
        res.writeHead(reply.status, { 'content-type': reply.contentType });
        res.end(String(reply.body));
      } else sendJson(res, reply.status, reply.body);
    } catch (error) {
      const err = toKilnError(error);
      errors.inc({ code: err.code });
      if (err.code === 'KILN_INTERNAL') log.error({ err: error, route: routeName }, 'request failed unexpectedly');
      if (stream) stream.error(err);
      else sendError(res, err);
    } finally {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      requests.observe({ route: routeName }, seconds);
      log.debug({ method: req.method, url: req.url, route: routeName, status: res.statusCode, seconds }, 'request');
    }
  };

  const server = createServer({ requestTimeout: 0, headersTimeout: 30_000 }, (req, res) => {
    void handle(req, res);
  });
  // Long provisioning requests stream for minutes: no idle socket timeout on the server side.
  server.timeout = 0;
  server.keepAliveTimeout = 5_000;
  return server;
}
