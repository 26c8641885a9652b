// Full disk: kilnd's state dir on a small tmpfs mounted by the test (root). A fetch larger than
// the free space is refused before any byte is written; fetches that run out of space mid-way,
// and a flat disk that does not fit, fail with KILN_NO_SPACE; nothing partial remains (cache,
// tmp, instance folders); kilnd keeps serving; and once space is freed the same requests work.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { patternBytes } from '../../fixtures/fault-server.js';
import { call, consistencyProblems, killHard, sha256, startFaultServer, startKilnd, tempDir } from './helpers.js';

const MiB = 1024 * 1024;

const dir = tempDir(t, 'kiln-rel-full-');
const stateDir = join(dir, 'state');
mkdirSync(stateDir);
execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=40m,mode=0700', 'tmpfs', stateDir]);
// Registered first, so it runs after kilnd's own teardown; lazy, in case a file is still open.
t.teardown(() => void spawnSync('umount', ['-l', stateDir]));

const server = await startFaultServer();
t.teardown(() => server.close());
const kilnd = await startKilnd(t, { dir, args: ['--free-space-margin', '0', '--fetch-retries', '1', '--fetch-retry-backoff', '0'] });
t.teardown(() => killHard(kilnd));
const api = (method: string, path: string, body?: unknown) => call(kilnd.socket, method, path, body);

const image = (name: string, size: number, seed: number) => {
  const data = patternBytes(size, seed);
  // Throttled a little, so two downloads really overlap.
  return { url: server.add(`/${name}`, { data, faults: { bytesPerSecond: 48 * MiB } }), checksum: `sha256:${sha256(data)}`, size };
};
const freeMiB = () => Math.round((statfsSync(stateDir).bavail * statfsSync(stateDir).bsize) / MiB);

async function nothingPartial(t: Tap.Test, what: string) {
  t.same(readdirSync(join(stateDir, 'tmp')), [], `${what}: tmp/ is empty`);
  t.same(await consistencyProblems(kilnd), [], `${what}: the state dir is consistent`);
  const s = await api('GET', '/v1/status');
  t.equal(s.status, 200, `${what}: kilnd still serves`);
}
declare namespace Tap { type Test = import('tap').Test }

const big = image('big.img', 64 * MiB, 1);
const a = image('a.img', 24 * MiB, 2);
const b = image('b.img', 24 * MiB, 3);
const small = image('small.img', 4 * MiB, 4);

t.test('a download larger than the free space is refused before any byte is written', async (t) => {
  const r = await api('POST', '/v1/images', { url: big.url, checksum: big.checksum });
  t.equal(r.status, 507, r.text);
  t.equal(r.json?.error?.code, 'KILN_NO_SPACE');
  t.ok(r.json.error.details.needBytes >= 64 * MiB, 'details carry the bytes needed');
  t.ok(server.requests.filter((q) => q.path === '/big.img').every((q) => q.bytesSent < 8 * MiB), 'the body was abandoned at once');
  await nothingPartial(t, 'refused up front');
});

t.test('downloads that run out of space mid-way fail with KILN_NO_SPACE and leave nothing', async (t) => {
  t.ok(freeMiB() >= 30, `${freeMiB()} MiB free: each fits alone, both together do not`);
  const [ra, rb] = await Promise.all([api('POST', '/v1/images', { url: a.url, checksum: a.checksum }), api('POST', '/v1/images', { url: b.url, checksum: b.checksum })]);
  const codes = [ra, rb].map((r) => (r.status === 200 ? 'ok' : r.json?.error?.code));
  t.ok(codes.includes('KILN_NO_SPACE'), `one of them ran out of space (${codes.join(', ')})`);
  t.ok(codes.every((c) => c === 'ok' || c === 'KILN_NO_SPACE'), 'no other failure');
  await nothingPartial(t, 'out of space mid-download');
});

t.test('a flat disk that does not fit fails with KILN_NO_SPACE and the instance rolls back', async (t) => {
  // Fill what is left with one cached image, so a 24 MiB flat copy cannot fit.
  for (const img of [a, b]) {
    if ((await api('GET', `/v1/images/${img.checksum}`)).status !== 200 && freeMiB() > 26) {
      t.equal((await api('POST', '/v1/images', { url: img.url, checksum: img.checksum })).status, 200);
    }
  }
  const cached = (await api('GET', '/v1/images')).json as Array<{ digest: string; actualSize: number }>;
  t.equal(cached.length, 1, 'one 24 MiB image is cached');
  t.ok(freeMiB() < 24, `${freeMiB()} MiB free, less than the copy needs`);
  const r = await api('POST', '/v1/instances', { name: 'flat-1', image: cached[0]!.digest, diskMode: 'flat', memory: 128 * MiB });
  t.equal(r.json?.error?.code, 'KILN_NO_SPACE', `${r.status} ${r.text.slice(0, 300)}`);
  t.equal(r.status, 507);
  t.same(readdirSync(join(stateDir, 'instances')), [], 'no instance folder, no partial disk');
  t.same((await api('GET', '/v1/images')).json[0].inUseBy, [], 'the image reference was released');
  await nothingPartial(t, 'flat disk out of space');
});

t.test('once space is freed, the same requests succeed', async (t) => {
  const cached = (await api('GET', '/v1/images')).json as Array<{ digest: string }>;
  const rm = await api('DELETE', `/v1/images/${cached[0]!.digest}`);
  t.equal(rm.status, 200, 'an unused image can be removed to make room');
  t.ok(freeMiB() >= 38, `${freeMiB()} MiB free again`);
  const fa = await api('POST', '/v1/images', { url: a.url, checksum: a.checksum });
  t.equal(fa.status, 200, fa.text.slice(0, 300));
  const fs = await api('POST', '/v1/images', { url: small.url, checksum: small.checksum });
  t.equal(fs.status, 200, fs.text.slice(0, 300));
  const flat = await api('POST', '/v1/instances', { name: 'flat-1', image: small.checksum, diskMode: 'flat', memory: 128 * MiB });
  t.equal(flat.status, 201, flat.text.slice(0, 300));
  const over = await api('POST', '/v1/instances', { name: 'over-1', image: a.checksum, memory: 128 * MiB });
  t.equal(over.status, 201, over.text.slice(0, 300));
  t.same(await consistencyProblems(kilnd), [], 'consistent');
  for (const name of ['flat-1', 'over-1']) t.equal((await api('DELETE', `/v1/instances/${name}`)).status, 200);
});
