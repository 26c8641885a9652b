// Owns: the HTTP plumbing of the API: bounded body reading, JSON replies, error bodies, NDJSON
// streams. Must not: know routes or services; no raw HTTP objects pass below api/.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { KilnError, toKilnError } from '../errors.js';
import type { ProgressEvent } from './protocol.js';

export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    refuseRest(req);
    throw new KilnError('KILN_TOO_LARGE', `request body of ${declared} bytes exceeds the ${maxBytes}-byte limit`, { limit: maxBytes });
  }
  const text = await new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        cleanup();
        refuseRest(req);
        reject(new KilnError('KILN_TOO_LARGE', `request body exceeds the ${maxBytes}-byte limit`, { limit: maxBytes }));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const onError = (e: Error) => {
      cleanup();
      reject(new KilnError('KILN_BAD_REQUEST', `request body could not be read: ${e.message}`));
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
  if (text.length === 0) return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new KilnError('KILN_BAD_REQUEST', `request body is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * Discards the rest of an oversized body instead of resetting the connection, so the caller
 * reads its 413 rather than an EPIPE. The discarding is bounded: a body that goes on for more
 * than DISCARD_MAX_BYTES or DISCARD_MAX_MS more loses its connection.
 */
const DISCARD_MAX_BYTES = 64 * 1024 * 1024;
const DISCARD_MAX_MS = 10_000;

function refuseRest(req: IncomingMessage): void {
  let discarded = 0;
  const timer = setTimeout(() => req.socket.destroy(), DISCARD_MAX_MS).unref();
  req.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > DISCARD_MAX_BYTES) req.socket.destroy();
  });
  req.once('end', () => clearTimeout(timer));
  req.once('close', () => clearTimeout(timer));
  req.resume();
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
