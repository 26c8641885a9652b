// ImageCache bookkeeping on real files: references, rm, prune (LRU, age, size, never in use),
// verify + quarantine, prefix references, and crash recovery of debris at init().
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FaultServer, patternBytes } from '../../fixtures/fault-server.js';
import { isKilnError } from '../../../agent/errors.js';
import type { ImageCache } from '../../../agent/images/cache.js';
import { makeCache, sha256 } from './helpers.js';

const MiB = 1024 * 1024;
let server: FaultServer;
t.before(async () => {
  server = await FaultServer.start();
});
t.teardown(() => server.close());

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    return isKilnError(e) ? e.code : `not a KilnError: ${String(e)}`;
  }
}

async function fetchN(cache: ImageCache, n: number, size: number, seed: number): Promise<string[]> {
  const digests: string[] = [];
  for (let i = 0; i < n; i++) {
    const data = patternBytes(size, seed + i);
    const url = server.add(`/c-${seed}-${i}.img`, { data });
    digests.push((await cache.ensure({ url, checksum: `sha256:${sha256(data)}` })).digest);
  }
  return digests;
}

function setLastUsed(root: string, digest: string, when: Date): void {
  const p = join(root, 'images', 'sha256', digest.slice(7), 'meta.json');
  const meta = JSON.parse(readFileSync(p, 'utf8'));
  meta.lastUsedAt = when.toISOString();
  writeFileSync(p, JSON.stringify(meta));
}

t.test('references: acquire re-inspects and records, rm refuses while in use, release frees', async (t) => {
  const { cache } = await makeCache(t);
  const [d] = await fetchN(cache, 1, MiB, 100);
  const img = await cache.acquire(d!, 'web-1');
  t.same(img.inUseBy, ['web-1']);
  await cache.acquire(d!, 'disk:/srv/x y.qcow2');
  t.same((await cache.get(d!)).inUseBy.sort(), ['disk:/srv/x y.qcow2', 'web-1'], 'holder names with odd characters round-trip');
  t.equal(await code(cache.remove(d!)), 'KILN_IN_USE');
  await cache.release(d!, 'web-1');
  await cache.release(d!, 'web-1');
  t.equal(await code(cache.remove(d!)), 'KILN_IN_USE', 'still one holder');
  await cache.release(d!, 'disk:/srv/x y.qcow2');
  await cache.remove(d!);
  t.equal(await code(cache.get(d!)), 'KILN_NOT_FOUND');
  t.equal(await code(cache.acquire(d!, 'web-2')), 'KILN_NOT_FOUND');
  await cache.release(d!, 'web-2');
  t.pass('release of a removed image is a no-op');
});

t.test('acquire refuses a base whose bytes no longer inspect as recorded', async (t) => {
  const { cache } = await makeCache(t);
  const dir = mkdtempSync(join(tmpdir(), 'kiln-q-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('qemu-img', ['create', '-f', 'qcow2', join(dir, 'a.qcow2'), '16M'], { stdio: 'ignore' });
  const data = readFileSync(join(dir, 'a.qcow2'));
  const url = server.add('/acq.qcow2', { data });
  const img = await cache.ensure({ url, checksum: `sha256:${sha256(data)}` });
  // Simulate tampering: point the qcow2 at a backing file.
  execFileSync('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', img.path], { stdio: 'ignore' });
  const c = await code(cache.acquire(img.digest, 'web-1'));
  t.ok(['KILN_IMAGE_UNSAFE', 'KILN_FORMAT_MISMATCH'].includes(c), `refused with ${c}`);
  t.same((await cache.get(img.digest)).inUseBy, [], 'no reference recorded');
});

t.test('get/inspect by sha256:HEX, bare hex and unique prefix; ambiguity and bad refs', async (t) => {
  const { cache } = await makeCache(t);
  const digests = await fetchN(cache, 2, 64 * 1024, 200);
  const hex = digests[0]!.slice(7);
  t.equal((await cache.get(digests[0]!)).digest, digests[0]);
  t.equal((await cache.get(hex)).digest, digests[0]);
  t.equal((await cache.get(hex.slice(0, 8))).digest, digests[0]);
  t.equal((await cache.get('SHA256:' + hex.toUpperCase())).digest, digests[0]);
  t.equal(await code(cache.get('')), 'KILN_BAD_REQUEST');
  t.equal(await code(cache.get('../etc')), 'KILN_BAD_REQUEST');
  t.equal(await code(cache.get('f'.repeat(64))), 'KILN_NOT_FOUND');
  const h1 = digests[0]!.slice(7);
  const h2 = digests[1]!.slice(7);
  let common = 0;
  while (h1[common] === h2[common]) common++;
  if (common > 0) t.equal(await code(cache.get(h1.slice(0, common))), 'KILN_CONFLICT');
  t.equal((await cache.list()).length, 2);
  t.same(await cache.stats(), { count: 2, bytes: 2 * 64 * 1024 });
});

t.test('prune: LRU first down to max bytes, by age, never an image in use', async (t) => {
  const { cache, layout } = await makeCache(t);
  const d = await fetchN(cache, 4, MiB, 300);
  const now = Date.now();
  // d0 oldest ... d3 newest; d0 is in use.
  d.forEach((digest, i) => setLastUsed(layout.root, digest, new Date(now - (10 - i) * 86400_000)));
  await cache.acquire(d[0]!, 'web-1');
  setLastUsed(layout.root, d[0]!, new Date(now - 10 * 86400_000));

  const r1 = await cache.prune({ maxBytes: 2 * MiB });
  t.same(r1.removed, [d[1], d[2]], 'least recently used unused images go first, the used one is skipped');
  t.equal(r1.freedBytes, 2 * MiB);
  t.same((await cache.list()).map((i) => i.digest).sort(), [d[0], d[3]].sort());

  const r2 = await cache.prune({ olderThanMs: 8 * 86400_000 });
  t.same(r2.removed, [], 'd0 is 10 days old but in use; d3 is only 7 days old');
  const r3 = await cache.prune({ olderThanMs: 6 * 86400_000 });
  t.same(r3.removed, [d[3]]);
  const r4 = await cache.prune({});
  t.same(r4.removed, [], 'the image in use survives a prune of everything unused');
  await cache.release(d[0]!, 'web-1');
  const r5 = await cache.prune({});
  t.same(r5.removed, [d[0]]);
  t.same(await cache.list(), []);
});

t.test('prune and fetch of one image serialize on its lock', async (t) => {
  const { cache } = await makeCache(t);
  const data = patternBytes(2 * MiB, 400);
  const url = server.add('/race.img', { data, faults: { bytesPerSecond: 8 * MiB } });
  const checksum = `sha256:${sha256(data)}`;
  const fetching = cache.ensure({ url, checksum });
  await new Promise((r) => setTimeout(r, 50));
  const pruned = await cache.prune({});
  const img = await fetching;
  t.same(pruned.removed, [], 'nothing was cached yet when prune ran');
  t.ok(existsSync(img.path), 'the fetched image is intact');
  const [again, prunedAfter] = await Promise.all([cache.ensure({ url, checksum }), cache.prune({})]);
  t.equal(again.digest, checksum);
  t.ok(prunedAfter.removed.length <= 1);
});

t.test('verify re-hashes everything and quarantines what fails; an image in use is reported, not moved', async (t) => {
  const { cache, layout } = await makeCache(t);
  const d = await fetchN(cache, 3, MiB, 500);
  const flip = (digest: string) => {
    const fd = openSync(join(layout.images, 'sha256', digest.slice(7), 'disk'), 'r+');
    writeSync(fd, Buffer.from([0xff, 0x00, 0xff]), 0, 3, 4096);
    closeSync(fd);
  };
  flip(d[1]!);
  flip(d[2]!);
  await cache.acquire(d[2]!, 'web-1').catch(() => undefined);
  const events: string[] = [];
  const r = await cache.verify((e) => events.push(e.step));
  t.same(r.ok, [d[0]]);
  t.same(r.quarantined.map((q) => q.digest), [d[1]]);
  t.match(r.quarantined[0]!.reason, /hashes to sha256:/);
  t.same(r.failedInUse.map((q) => q.digest), [d[2]]);
  t.ok(events.length > 0, 'progress reported');
  t.notOk(existsSync(join(layout.images, 'sha256', d[1]!.slice(7))), 'the bad image left the cache');
  const q = readdirSync(layout.quarantine);
  t.equal(q.length, 1);
  t.match(readFileSync(join(layout.quarantine, q[0]!, 'QUARANTINE-REASON'), 'utf8'), /hashes to/);
  t.same((await cache.list()).map((i) => i.digest).sort(), [d[0], d[2]].sort());
});

t.test('init() after a crash: debris removed, broken folders quarantined, resumable parts kept', async (t) => {
  const first = await makeCache(t);
  const [good] = await fetchN(first.cache, 1, 256 * 1024, 600);
  const { layout } = first;
  const sha = join(layout.images, 'sha256');
  // A half-written metadata temp file, a staging folder, a trash folder, a stray part.
  writeFileSync(join(sha, good!.slice(7), '.tmp-meta.json-abc'), '{"trunc');
  mkdirSync(join(layout.tmp, 'stage-0123-abcd'));
  writeFileSync(join(layout.tmp, 'stage-0123-abcd', 'disk'), 'x');
  mkdirSync(join(layout.tmp, 'trash-0123-abcd'));
  writeFileSync(join(layout.tmp, 'orphan.part'), 'no state record');
  writeFileSync(join(layout.tmp, 'keep.part'), Buffer.alloc(1000));
  writeFileSync(join(layout.tmp, 'keep.part.json'), JSON.stringify({ version: 1, key: 'sha256:' + 'a'.repeat(64), url: 'http://x/y', validator: '"e1"', durableBytes: 1000, updatedAt: '' }));
  writeFileSync(join(layout.tmp, 'novalid.part'), Buffer.alloc(10));
  writeFileSync(join(layout.tmp, 'novalid.part.json'), JSON.stringify({ version: 1, key: 'k', url: 'http://x/z', durableBytes: 10 }));
  // Broken image folders: no meta, wrong size, not a digest name.
  const h1 = 'b'.repeat(64);
  mkdirSync(join(sha, h1));
  writeFileSync(join(sha, h1, 'disk'), 'abc');
  const h2 = 'c'.repeat(64);
  mkdirSync(join(sha, h2));
  writeFileSync(join(sha, h2, 'disk'), 'abc');
  writeFileSync(join(sha, h2, 'meta.json'), JSON.stringify({ digest: `sha256:${h2}`, actualSize: 99 }));
  mkdirSync(join(sha, 'not-a-digest'));

  const second = await makeCache(t, {}, { dir: first.dir });
  t.same(readdirSync(layout.tmp).sort(), ['keep.part', 'keep.part.json'], 'only the resumable part is left in tmp');
  t.same(readdirSync(sha), [good!.slice(7)], 'only the complete image is left');
  t.same(readdirSync(join(sha, good!.slice(7))).sort(), ['disk', 'meta.json', 'refs']);
  t.equal(readdirSync(layout.quarantine).filter((n) => !n.endsWith('.reason')).length, 3, 'three folders quarantined');
  t.same((await second.cache.list()).map((i) => i.digest), [good]);
  const v = await second.cache.verify();
  t.same(v.ok, [good]);
});
