// Owns: the HTTP plumbing of the API: bounded body reading, JSON replies, error bodies, NDJSON
// streams. Must not: know routes or services; no raw HTTP objects pass below api/.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { KilnError, toKilnError } from '../errors.js';
import type { ProgressEvent } from './protocol.js';

export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    req.resume();
    throw new KilnError('KILN_TOO_LARGE', `request body of ${declared} bytes exceeds the ${maxBytes}-byte limit`, { limit: maxBytes });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) {
      req.destroy();
      throw new KilnError('KILN_TOO_LARGE', `request body exceeds the ${maxBytes}-byte limit`, { limit: maxBytes });
    }
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return undefined;
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new KilnError('KILN_BAD_REQUEST', `request body is not valid JSON: ${(e as Error).message}`);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function errorBody(err: KilnError): { error: { code: string; message: string; details: Record<string, unknown> } } {
  return { error: { code: err.code, message: err.message, details: err.details } };
}

export function sendError(res: ServerResponse, error: unknown): KilnError {
  const err = toKilnError(error);
  if (!res.headersSent) sendJson(res, err.httpStatus, errorBody(err));
  else res.end();
  return err;
}

/** An NDJSON stream: progress lines, then exactly one result or error line. */
export class NdjsonStream {
  private ended = false;
  constructor(private readonly res: ServerResponse) {
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache' });
  }
  progress(event: Omit<Extract<ProgressEvent, { type: 'progress' }>, 'type'>): void {
    if (!this.ended) this.res.write(JSON.stringify({ type: 'progress', ...event }) + '\n');
  }
  result(result: unknown): void {
    this.finish({ type: 'result', result });
  }
  error(error: unknown): void {
    this.finish({ type: 'error', ...errorBody(toKilnError(error)) });
  }
  private finish(line: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.res.end(JSON.stringify(line) + '\n');
  }
}

export function wantsStream(req: IncomingMessage): boolean {
  return (req.headers.accept ?? '').includes('application/x-ndjson');
}
