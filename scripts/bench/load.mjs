// The body of scripts/bench/load (see there). The baseline is each request kind issued alone on
// the same kilnd once the burst is over (images cached, nothing else running), so the ratio says
// what concurrency costs, measured on this host in this run.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '200' },
    instances: { type: 'string', default: '20' },
  },
});
const ROUNDS = Number(opt.rounds);
const TOTAL = Number(opt.concurrency);
const INSTANCES = Number(opt.instances);
const MiB = 1024 * 1024;
const KILND = new URL('../../build/agent/main.js', import.meta.url).pathname;

const root = mkdtempSync(join(tmpdir(), 'kiln-bench-load-'));
const cleanups = [() => rmSync(root, { recursive: true, force: true })];
const cleanup = async () => {
  for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => undefined);
};
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));

// --- images, served over loopback with GETs counted per file
function qemuImg(args) {
  const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`qemu-img ${args.join(' ')}: ${r.stderr}`);
}
qemuImg(['create', '-q', '-f', 'qcow2', join(root, 'a.qcow2'), '64M']);
writeFileSync(join(root, 'b.raw'), randomBytes(2 * MiB));
qemuImg(['convert', '-q', '-f', 'raw', '-O', 'qcow2', join(root, 'b.raw'), join(root, 'b.qcow2')]);
writeFileSync(join(root, 'c.raw'), randomBytes(3 * MiB));
const files = ['a.qcow2', 'b.qcow2', 'c.raw'].map((name) => {
  const data = readFileSync(join(root, name));
  return { name, data, checksum: `sha256:${createHash('sha256').update(data).digest('hex')}` };
});
const gets = new Map();
const server = createServer((req, res) => {
  const name = new URL(req.url, 'http://x').pathname.slice(1);
  const f = files.find((x) => x.name === name);
  if (!f) return void res.writeHead(404).end();
  gets.set(name, (gets.get(name) ?? 0) + 1);
  res.writeHead(200, { 'content-length': f.data.length, etag: `"${f.checksum.slice(7, 23)}"` });
  res.end(f.data);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
cleanups.push(() => new Promise((r) => server.close(r)));
const base = `http://127.0.0.1:${server.address().port}`;

// --- kilnd
async function startKilnd(dir) {
  const socket = join(dir, 'kiln.sock');
  const proc = spawn(process.execPath, [KILND, '--state-dir', join(dir, 'state'), '--socket', socket, '--libvirt-uri', 'test:///default', '--log-level', 'warn'], {
    stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, UV_THREADPOOL_SIZE: '16' },
  });
  const exited = new Promise((r) => proc.once('exit', r));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`kilnd exited ${proc.exitCode}`);
    if (existsSync(socket) && (await call(socket, 'GET', '/v1/health').then((r) => r.status === 200, () => false))) break;
    if (Date.now() > deadline) throw new Error('kilnd did not come up');
    await new Promise((r) => setTimeout(r, 50));
  }
  return { socket, stop: async () => { proc.kill('SIGTERM'); await exited; } };
}

function call(socket, method, path, body) {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = request({ socketPath: socket, method, path, agent: false, headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {} }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString(), ms: performance.now() - t0 }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

// --- the mixed burst
function burst(socket, round) {
  const jobs = [];
  const fetches = 3 * Math.round((TOTAL * 0.3) / 3);
  const light = TOTAL - fetches - 2 * INSTANCES;
  const lightPaths = ['/v1/status', '/v1/status', '/v1/images', '/v1/instances', '/v1/health'];
  for (let i = 0; i < light; i++) {
    const path = lightPaths[i % lightPaths.length];
    jobs.push(async () => [{ kind: `GET ${path}`, ...(await call(socket, 'GET', path)), want: 200 }]);
  }
  for (let i = 0; i < fetches; i++) {
    const f = files[i % 3];
    jobs.push(async () => [{ kind: 'POST /v1/images (fetch)', ...(await call(socket, 'POST', '/v1/images', { url: `${base}/${f.name}`, checksum: f.checksum })), want: 200 }]);
  }
  for (let i = 0; i < INSTANCES; i++) {
    const f = files[i % 3];
    const name = `bench-${round}-${i}`;
    jobs.push(async () => {
      const c = { kind: 'POST /v1/instances (create)', ...(await call(socket, 'POST', '/v1/instances', { name, image: `${base}/${f.name}`, checksum: f.checksum, memory: 128 * MiB })), want: 201 };
      if (c.status !== 201) return [c];
      return [c, { kind: 'DELETE /v1/instances/:name', ...(await call(socket, 'DELETE', `/v1/instances/${name}`)), want: 200 }];
    });
  }
  return Promise.all(jobs.map((j) => j())).then((r) => r.flat());
}

async function idleBaseline(socket) {
  const out = [];
  for (let i = 0; i < 10; i++) {
    for (const path of ['/v1/status', '/v1/images', '/v1/instances', '/v1/health']) out.push({ kind: `GET ${path}`, ...(await call(socket, 'GET', path)) });
    const f = files[i % 3];
    out.push({ kind: 'POST /v1/images (fetch)', ...(await call(socket, 'POST', '/v1/images', { url: `${base}/${f.name}`, checksum: f.checksum })) });
    if (i < 5) {
      out.push({ kind: 'POST /v1/instances (create)', ...(await call(socket, 'POST', '/v1/instances', { name: `idle-${i}`, image: f.checksum, memory: 128 * MiB })) });
      out.push({ kind: 'DELETE /v1/instances/:name', ...(await call(socket, 'DELETE', `/v1/instances/idle-${i}`)) });
    }
  }
  return out;
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : NaN;
};
const byKind = (rows) => rows.reduce((m, r) => m.set(r.kind, [...(m.get(r.kind) ?? []), r.ms]), new Map());

const loaded = [];
const idle = [];
const errors = [];
const getCounts = [];
try {
  for (let round = 0; round < ROUNDS; round++) {
    const dir = mkdtempSync(join(root, `round-${round}-`));
    gets.clear();
    const k = await startKilnd(dir);
    try {
      const t0 = performance.now();
      const rows = await burst(k.socket, round);
      const wall = performance.now() - t0;
      for (const r of rows) {
        loaded.push(r);
        if (r.status !== r.want) errors.push(`${r.kind}: ${r.status} ${r.text.slice(0, 160)}`);
      }
      getCounts.push(Object.fromEntries(files.map((f) => [f.name, gets.get(f.name) ?? 0])));
      console.log(`round ${round + 1}/${ROUNDS}: ${rows.length} requests in ${(wall / 1000).toFixed(2)} s, GETs per image ${JSON.stringify(getCounts.at(-1))}`);
      idle.push(...(await idleBaseline(k.socket)));
    } finally {
      await k.stop();
    }
  }
} finally {
  await cleanup();
}

const L = byKind(loaded);
const I = byKind(idle);
const pad = (s, n) => String(s).padEnd(n);
const num = (x) => (Number.isFinite(x) ? x.toFixed(1) : '-').padStart(8);
console.log(`\n${pad('request kind', 30)}${'n'.padStart(5)}${'p50 ms'.padStart(8)}${'p99 ms'.padStart(8)}${'max ms'.padStart(8)}${'idle p50'.padStart(9)}${'ratio'.padStart(8)}`);
for (const [kind, xs] of [...L].sort()) {
  const idleP50 = pct(I.get(kind) ?? [], 50);
  console.log(`${pad(kind, 30)}${String(xs.length).padStart(5)}${num(pct(xs, 50))}${num(pct(xs, 99))}${num(Math.max(...xs))} ${num(idleP50)}${(pct(xs, 50) / idleP50).toFixed(1).padStart(7)}x`);
}
const all = loaded.map((r) => r.ms);
console.log(`${pad('all', 30)}${String(all.length).padStart(5)}${num(pct(all, 50))}${num(pct(all, 99))}${num(Math.max(...all))}`);
const dup = getCounts.filter((g) => Object.values(g).some((n) => n !== 1)).length;
console.log(`\nerrors: ${errors.length}${errors.length ? '\n  ' + errors.slice(0, 10).join('\n  ') : ''}`);
console.log(`rounds where an image was downloaded more than once: ${dup} of ${ROUNDS}`);
process.exit(errors.length || dup ? 1 : 0);
