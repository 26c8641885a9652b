// kill -9 during a fetch, then a new ImageCache.init(): the cache is consistent (every image
// folder complete and hashing to its name, tmp/ holding only resumable parts), and the next
// fetch resumes from the bytes the killed process had made durable.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FaultServer, patternBytes } from '../../fixtures/fault-server.js';
import { makeCache, sha256 } from './helpers.js';
import type { StateLayout } from '../../../agent/statedir.js';

const MiB = 1024 * 1024;
const CHILD = fileURLToPath(new URL('./fetch-child.ts', import.meta.url));

let server: FaultServer;
t.before(async () => {
  server = await FaultServer.start();
});
t.teardown(() => server.close());

/** Runs the child fetch and kill -9s it when `when` says so; resolves with the last events seen. */
function runAndKill(stateDir: string, url: string, checksum: string, when: (e: { step: string; done?: number }) => boolean, extraDelayMs = 0, overrides: Record<string, unknown> = {}, poll?: () => boolean): Promise<{ killed: boolean; events: Array<{ step: string; done?: number }> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, CHILD, stateDir, url, checksum, JSON.stringify(overrides)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Type-checking is the test suite's job (tsconfig.test.json); the child only needs to start fast.
      env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' },
    });
    const events: Array<{ step: string; done?: number }> = [];
    let buf = '';
    let err = '';
    let killing = false;
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let e: { step: string; done?: number };
        try {
          e = JSON.parse(line);
        } catch {
          continue;
        }
        events.push(e);
        if (!killing && when(e)) {
          killing = true;
          setTimeout(() => child.kill('SIGKILL'), extraDelayMs);
        }
      }
    });
    const poller = poll
      ? setInterval(() => {
          if (!killing && poll()) {
            killing = true;
            child.kill('SIGKILL');
          }
        }, 50)
      : undefined;
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (poller) clearInterval(poller);
      if (signal === 'SIGKILL') resolve({ killed: true, events });
      else if (code === 0) resolve({ killed: false, events });
      else reject(new Error(`child exited ${code}: ${err.slice(-2000)}`));
    });
  });
}

/** The consistency rule: complete images only, named by their content; tmp holds part+state pairs only. */
function assertConsistent(t: Test, layout: StateLayout): void {
  const sha = join(layout.images, 'sha256');
  for (const hex of readdirSync(sha)) {
    const files = readdirSync(join(sha, hex)).sort();
    t.same(files, ['disk', 'meta.json', 'refs'], `image ${hex.slice(0, 12)} folder complete`);
    t.equal(createHash('sha256').update(readFileSync(join(sha, hex, 'disk'))).digest('hex'), hex, 'content hashes to its name');
  }
  const tmp = readdirSync(layout.tmp).sort();
  for (const n of tmp) t.match(n, /^[0-9a-f]{32}\.part(\.json)?$/, `only resumable parts in tmp (${n})`);
  t.equal(tmp.filter((n) => n.endsWith('.part')).length, tmp.filter((n) => n.endsWith('.part.json')).length, 'every part has its state record');
}

t.test('kill -9 mid-download, restart: consistent, then resumed from the durable bytes', async (t) => {
  const size = 80 * MiB;
  const data = patternBytes(size, 77);
  const stallAt = 72 * MiB;
  const url = server.add('/crash-big.img', { data, faults: { stallAt: { offset: stallAt, ms: 30_000, times: 1 } } });
  const checksum = `sha256:${sha256(data)}`;
  const env = await makeCache(t);
  await env.cache.close();
  // The server stalls at 72 MiB (the child waits: long stall timeout); the child is killed as
  // soon as its state record says a prefix was made durable.
  const durableNow = () => {
    for (const n of readdirSync(env.layout.tmp)) {
      if (!n.endsWith('.part.json')) continue;
      try {
        if ((JSON.parse(readFileSync(join(env.layout.tmp, n), 'utf8')) as { durableBytes?: number }).durableBytes! > 0) return true;
      } catch {
        /* being replaced */
      }
    }
    return false;
  };
  const r = await runAndKill(env.layout.root, url, checksum, () => false, 0, { fetchStallTimeout: 60_000 }, durableNow);
  t.ok(r.killed, 'the child was killed mid-download');

  const restarted = await makeCache(t, {}, { dir: env.dir });
  assertConsistent(t, restarted.layout);
  t.same(readdirSync(join(restarted.layout.images, 'sha256')), [], 'nothing in the cache');
  const parts = readdirSync(restarted.layout.tmp).filter((n) => n.endsWith('.part'));
  t.equal(parts.length, 1, 'the partial download was kept for resume');

  const sentBefore = server.bytesSent('/crash-big.img');
  const events: string[] = [];
  const img = await restarted.cache.ensure({ url, checksum }, (e) => events.push(e.step));
  t.equal(img.digest, checksum);
  t.ok(events.includes('resume'), 'the partial file was re-hashed');
  const resumeReq = server.requests.filter((q) => q.path === '/crash-big.img').at(-1)!;
  t.match(resumeReq.range, /^bytes=\d+-$/, 'resumed with a Range');
  const from = Number(/bytes=(\d+)-/.exec(resumeReq.range ?? '')?.[1]);
  // The first fdatasync comes after 64 MiB were written; what it covers is the prefix below the
  // oldest write still in flight then (at most 8 MiB are in flight).
  const durable = 64 * MiB - 8 * MiB;
  t.ok(from >= durable, `resumed from ${from} bytes (>= ${durable} made durable)`);
  t.ok(server.bytesSent('/crash-big.img') - sentBefore <= size - durable + MiB, 'only the rest was transferred');
  assertConsistent(t, restarted.layout);
  t.same(readdirSync(restarted.layout.tmp), []);
});

t.test('kill -9 at assorted moments (download, verify, install): always consistent, always recoverable', async (t) => {
  const size = 12 * MiB;
  const data = patternBytes(size, 78);
  const url = server.add('/crash-small.img', { data, faults: { bytesPerSecond: 24 * MiB } });
  const checksum = `sha256:${sha256(data)}`;
  const moments: Array<[string, (e: { step: string; done?: number }) => boolean, number]> = [
    ['early in the body', (e) => e.step === 'fetch' && (e.done ?? 0) > 0, 0],
    ['halfway', (e) => e.step === 'fetch' && (e.done ?? 0) >= size / 2, 0],
    ['at verify', (e) => e.step === 'verify', 0],
    ['during install', (e) => e.step === 'inspect', 15],
  ];
  for (const [name, when, delay] of moments) {
    const env = await makeCache(t);
    await env.cache.close();
    await runAndKill(env.layout.root, url, checksum, when, delay);
    const restarted = await makeCache(t, {}, { dir: env.dir });
    t.comment(`killed ${name}`);
    assertConsistent(t, restarted.layout);
    const img = await restarted.cache.ensure({ url, checksum });
    t.equal(img.digest, checksum, `${name}: the next fetch completes`);
    t.same((await restarted.cache.verify()).ok, [checksum], `${name}: verify passes`);
  }
});
