// Real parts for the API and CLI integration tests: a kilnd process (build/agent/main.js) on a
// temp state dir and socket with libvirt's test:///default driver, a loopback HTTP server
// serving images made with the real qemu-img, and a raw HTTP client over the unix socket.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { Agent, createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { Test } from 'tap';

export const REPO = new URL('../../../', import.meta.url).pathname;
export const KILND = join(REPO, 'build/agent/main.js');
export const KILN = join(REPO, 'build/agent/cli/main.js');

export function tempDir(t: Test, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface Kilnd {
  socket: string;
  stateDir: string;
  proc: ChildProcess;
  log: () => string;
  stop(): Promise<number | null>;
}

/** Starts kilnd and waits until its socket answers /v1/health. */
export async function startKilnd(t: Test, o: { args?: string[]; dir?: string } = {}): Promise<Kilnd> {
  if (!existsSync(KILND)) throw new Error(`${KILND} is missing: run npx tsc -p tsconfig.json first`);
  const dir = o.dir ?? tempDir(t, 'kiln-api-');
  const socket = join(dir, 'kiln.sock');
  const stateDir = join(dir, 'state');
  let output = '';
  const proc = spawn(process.execPath, [KILND, '--state-dir', stateDir, '--socket', socket, '--libvirt-uri', 'test:///default', '--log-level', 'info', ...(o.args ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, UV_THREADPOOL_SIZE: '16' },
  });
  proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    return exited;
  };
  t.teardown(async () => {
    await Promise.race([stop(), new Promise((r) => setTimeout(r, 10_000))]);
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`kilnd exited ${proc.exitCode}: ${output}`);
    if (existsSync(socket)) {
      const ok = await call(socket, 'GET', '/v1/health').then((r) => r.status === 200, () => false);
      if (ok) break;
    }
    if (Date.now() > deadline) throw new Error(`kilnd did not come up: ${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { socket, stateDir, proc, log: () => output, stop };
}

export interface HttpReply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: any;
}

// Keep-alive (so kilnd drains a refused body instead of the client hitting EPIPE), but no idle
// sockets kept: reusing one just as the server's keep-alive timeout closes it races.
const oneShot = new Agent({ keepAlive: true, maxFreeSockets: 0 });

/** One HTTP request over the unix socket; `raw` sends the body bytes as they are. */
export function call(socket: string, method: string, path: string, body?: unknown, o: { raw?: Buffer | string; headers?: Record<string, string> } = {}): Promise<HttpReply> {
  const payload = o.raw !== undefined ? Buffer.from(o.raw) : body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request({
      socketPath: socket, method, path, agent: oneShot,
      headers: { ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}), ...o.headers },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** NDJSON lines of a streamed reply. */
export function ndjson(text: string): any[] {
  return text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
}

export interface ImageFile {
  url: string;
  path: string;
  sha256: string;
  checksum: string;
}

export interface ImageServer {
  base: string;
  dir: string;
  /** Requests served, by file name. */
  hits: Map<string, number>;
  /** A qcow2 image made with qemu-img (optionally with options like a backing file). */
  qcow2(name: string, size: string, extra?: string[]): ImageFile;
  file(name: string, format: string, size: string): ImageFile;
  missing(name: string): ImageFile;
}

export async function startImageServer(t: Test): Promise<ImageServer> {
  const dir = tempDir(t, 'kiln-images-');
  const hits = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const name = basename(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
    hits.set(name, (hits.get(name) ?? 0) + 1);
    const path = join(dir, name);
    if (!name || !existsSync(path)) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-length': statSync(path).size, 'content-type': 'application/octet-stream' });
    createReadStream(path).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const describe = (name: string): ImageFile => {
    const path = join(dir, name);
    const sha256 = createHash('sha256').update(readFileSync(path)).digest('hex');
    return { url: `${base}/${name}`, path, sha256, checksum: `sha256:${sha256}` };
  };
  const make = (name: string, format: string, size: string, extra: string[] = []) => {
    const r = spawnSync('qemu-img', ['create', '-q', '-f', format, ...extra, join(dir, name), size], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`qemu-img create failed: ${r.stderr}`);
    return describe(name);
  };
  return {
    base, dir, hits,
    qcow2: (name, size, extra) => make(name, 'qcow2', size, extra),
    file: (name, format, size) => make(name, format, size),
    missing: (name) => ({ url: `${base}/${name}`, path: join(dir, name), sha256: '0'.repeat(64), checksum: `sha256:${'0'.repeat(64)}` }),
  };
}
