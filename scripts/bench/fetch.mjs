#!/usr/bin/env node
// Benchmark of kiln's image fetch (download + sha256 verify + inspect + fsync + install) over
// loopback against `curl -o` alone and `curl -o` followed by `sha256sum`, all measured in the
// same run from the same server, printed as ratios; plus kilnd's peak RSS during its fetch.
// Not part of the test suite. Usage: scripts/bench/fetch [SIZE] [--runs N] [--dir DIR] [--keep]
//   SIZE   image size (default 1G; 4G shows memory staying flat)
//   --dir  where the image, curl's output and kilnd's state live (default: a tmpfs under /dev/shm,
//          so the disk's speed does not mask the pipeline; pass a disk path to include it)
import { spawn, execFileSync } from 'node:child_process';
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync, openSync, writeSync, closeSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { join } from 'node:path';
import { randomFillSync } from 'node:crypto';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const KILND = join(ROOT, 'build/agent/main.js');

// --serve DIR: the loopback server, run as its own process so kilnd's RSS and CPU are its own.
if (process.argv[2] === '--serve') {
  const dir = process.argv[3];
  const server = createServer((req, res) => {
    const path = join(dir, 'image.raw');
    const st = statSync(path);
    const etag = `"${st.size}-${Math.floor(st.mtimeMs)}"`;
    const headers = { etag, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream', 'last-modified': st.mtime.toUTCString() };
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m && (!req.headers['if-range'] || req.headers['if-range'] === etag) ? Number(m[1]) : 0;
    if (start) headers['content-range'] = `bytes ${start}-${st.size - 1}/${st.size}`;
    headers['content-length'] = st.size - start;
    res.writeHead(start ? 206 : 200, headers);
    createReadStream(path, { start, highWaterMark: 1024 * 1024 }).pipe(res);
  });
  server.listen(0, '127.0.0.1', () => process.stdout.write(`http://127.0.0.1:${server.address().port}/image.raw\n`));
  process.on('SIGTERM', () => process.exit(0));
} else {
  await main();
}

function parseSize(s) {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)i?B?$/i.exec(s);
  if (!m) throw new Error(`bad size ${s}`);
  return Math.round(Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase()));
}

function fmtBytes(n) {
  return n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(2)} GiB` : `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function timeCmd(cmd, args) {
  const t = performance.now();
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  return (performance.now() - t) / 1000;
}

function api(socket, method, path, body) {
  return new Promise((resolve, reject) => {
    const payload = body ? Buffer.from(JSON.stringify(body)) : undefined;
    const req = request({ socketPath: socket, agent: false, method, path, headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {} }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        const json = text ? JSON.parse(text) : undefined;
        if (res.statusCode >= 400) reject(new Error(`${method} ${path}: ${res.statusCode} ${text}`));
        else resolve(json);
      });
    });
    req.on('error', (e) => reject(new Error(`${method} ${path}: ${e.message}`)));
    req.end(payload);
  });
}

function procStatus(pid) {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

async function waitFor(cond, ms, what) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function main() {
  const args = process.argv.slice(2);
  let size = parseSize('1G');
  let runs = 3;
  let dirArg;
  let keep = false;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--runs') runs = Number(args[++i]);
    else if (args[i] === '--dir') dirArg = args[++i];
    else if (args[i] === '--keep') keep = true;
    else if (args[i] === '--help' || args[i] === '-h') {
      console.log('usage: scripts/bench/fetch [SIZE (default 1G)] [--runs N (default 3)] [--dir DIR (default tmpfs)] [--keep]');
      return;
    } else size = parseSize(args[i]);
  }
  if (!existsSync(KILND)) throw new Error(`${KILND} is missing: run npx tsc -p tsconfig.json first`);
  const base = dirArg ?? (existsSync('/dev/shm') ? '/dev/shm' : '/tmp');
  const dir = mkdtempSync(join(base, 'kiln-bench-fetch-'));
  const children = [];
  const cleanup = () => {
    for (const c of children) c.kill('SIGTERM');
    if (!keep) rmSync(dir, { recursive: true, force: true });
  };
  process.on('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  try {
    console.log(`kiln fetch benchmark: ${fmtBytes(size)} over loopback, ${runs} run(s) each, files in ${dir}`);
    // Incompressible content, written in 16 MiB blocks.
    const img = join(dir, 'image.raw');
    const fd = openSync(img, 'w');
    const block = Buffer.allocUnsafe(16 * 1024 * 1024);
    for (let done = 0; done < size; done += block.length) {
      randomFillSync(block);
      writeSync(fd, block, 0, Math.min(block.length, size - done));
    }
    closeSync(fd);

    const srv = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(srv);
    const url = await new Promise((resolve) => srv.stdout.once('data', (c) => resolve(c.toString().trim())));

    const out = join(dir, 'curl.out');
    const hex = execFileSync('sha256sum', [img]).toString().split(' ')[0];
    const checksum = `sha256:${hex}`;

    const stateDir = join(dir, 'state');
    const socket = join(dir, 'kiln.sock');
    const kilnd = spawn(process.execPath, [KILND, '--state-dir', stateDir, '--socket', socket, '--libvirt-uri', 'test:///default', '--log-level', 'warn', '--free-space-margin', '0'], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env } });
    let kilndLog = '';
    kilnd.stdout.on('data', (c) => (kilndLog = (kilndLog + c.toString()).slice(-20000)));
    kilnd.on('exit', (code, sig) => { if (code !== 0) console.error('kilnd exited', code, sig, kilndLog.slice(-3000)); });
    children.push(kilnd);
    await waitFor(() => api(socket, 'GET', '/v1/health').then(() => true, () => false), 60_000, 'kilnd');
    const idle = procStatus(kilnd.pid);

    const results = { curl: [], curlSha: [], kiln: [] };
    let peak = 0;
    for (let r = 0; r < runs; r++) {
      rmSync(out, { force: true });
      results.curl.push(timeCmd('curl', ['-sS', '-o', out, url]));
      rmSync(out, { force: true });
      const t0 = performance.now();
      execFileSync('curl', ['-sS', '-o', out, url]);
      const sum = execFileSync('sha256sum', [out]).toString().split(' ')[0];
      results.curlSha.push((performance.now() - t0) / 1000);
      if (sum !== hex) throw new Error('curl downloaded different bytes');
      rmSync(out, { force: true });

      let sampled = 0;
      const sampler = setInterval(() => {
        try {
          sampled = Math.max(sampled, procStatus(kilnd.pid).rss);
        } catch { /* exited */ }
      }, 50);
      const t1 = performance.now();
      const image = await api(socket, 'POST', '/v1/images', { url, checksum });
      results.kiln.push((performance.now() - t1) / 1000);
      clearInterval(sampler);
      peak = Math.max(peak, sampled, procStatus(kilnd.pid).hwm);
      if (image.digest !== checksum || image.actualSize !== size) throw new Error(`kiln returned ${JSON.stringify(image)}`);
      await api(socket, 'DELETE', `/v1/images/${image.digest}`);
      console.log(`  run ${r + 1}: curl ${results.curl[r].toFixed(2)} s, curl+sha256sum ${results.curlSha[r].toFixed(2)} s, kiln ${results.kiln[r].toFixed(2)} s`);
    }
    const curl = median(results.curl);
    const curlSha = median(results.curlSha);
    const kiln = median(results.kiln);
    const rate = (s) => `${((size / s) / 1024 ** 2).toFixed(0)} MiB/s`;
    console.log('');
    console.log(`median  curl -o:               ${curl.toFixed(2)} s  (${rate(curl)})`);
    console.log(`median  curl -o && sha256sum:  ${curlSha.toFixed(2)} s  (${rate(curlSha)})`);
    console.log(`median  kiln fetch+verify:     ${kiln.toFixed(2)} s  (${rate(kiln)})  [includes inspect, fsync, install]`);
    console.log('');
    console.log(`ratio   kiln / curl -o:                    ${(kiln / curl).toFixed(2)}x   (target <= 1.10x)`);
    console.log(`ratio   (curl -o && sha256sum) / kiln:     ${(curlSha / kiln).toFixed(2)}x   (target >= 2x)`);
    console.log(`memory  kilnd RSS idle ${fmtBytes(idle.rss)}, peak while fetching ${fmtBytes(peak)} (target < 150 MiB)`);
  } finally {
    cleanup();
  }
}
