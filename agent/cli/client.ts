// Owns: the CLI's HTTP client of the kilnd API: JSON requests, NDJSON progress streams, and
// turning error bodies back into KilnErrors. The transport is a connection factory, so the same
// client runs over the local unix socket or an SSH stream-local forward.
// Must not: format output (output.ts) or know commands.
import { request, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { KilnError, fromWire } from '../errors.js';
import type { ProgressEvent } from '../api/protocol.js';

export type ConnectionFactory = () => Duplex;

export interface ProgressHandler {
  (event: Extract<ProgressEvent, { type: 'progress' }>): void;
}

export function unixSocketConnector(path: string): ConnectionFactory {
  return () => connect({ path });
}

export class ApiClient {
  constructor(private readonly connector: ConnectionFactory, private readonly where: string) {}

  async request<T>(method: string, path: string, body?: unknown, onProgress?: ProgressHandler): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(
        {
          method,
          path,
          createConnection: () => this.connector() as never,
          headers: {
            accept: onProgress ? 'application/x-ndjson, application/json' : 'application/json',
            ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
          },
        },
        resolve,
      );
      req.on('error', (e: NodeJS.ErrnoException) => {
        reject(new KilnError('KILN_UNAVAILABLE', `cannot reach kilnd at ${this.where}: ${e.code ?? e.message}${e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? ' (is kilnd running?)' : ''}`, { where: this.where, errno: e.code }));
      });
      req.end(payload);
    });
    const type = res.headers['content-type'] ?? '';
    if (type.includes('application/x-ndjson')) return this.readStream<T>(res, onProgress);
    const text = await readAll(res);
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      if (type.startsWith('text/')) return text as T;
      throw new KilnError('KILN_INTERNAL', `kilnd answered ${res.statusCode} with a body that is not JSON`, { status: res.statusCode });
    }
    if ((res.statusCode ?? 500) >= 400) {
      throw fromWire(parsed) ?? new KilnError('KILN_INTERNAL', `kilnd answered HTTP ${res.statusCode}`, { status: res.statusCode });
    }
    return parsed as T;
  }

  private async readStream<T>(res: IncomingMessage, onProgress?: ProgressHandler): Promise<T> {
    let buffered = '';
    let outcome: { result: T } | { error: KilnError } | undefined;
    const handleLine = (line: string) => {
      if (!line.trim()) return;
      const event = JSON.parse(line) as ProgressEvent;
      if (event.type === 'progress') onProgress?.(event);
      else if (event.type === 'result') outcome = { result: event.result as T };
      else outcome = { error: fromWire(event) ?? new KilnError('KILN_INTERNAL', 'malformed error event') };
    };
    for await (const chunk of res) {
      buffered += (chunk as Buffer).toString('utf8');
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        handleLine(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    }
    handleLine(buffered);
    if (!outcome) throw new KilnError('KILN_UNAVAILABLE', 'kilnd closed the progress stream without a result');
    if ('error' in outcome) throw outcome.error;
    return outcome.result;
  }
}

async function readAll(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
