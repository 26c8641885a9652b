// ImageCache.ensure against a real HTTP server on loopback with fault injection, real qemu-img
// and the real safety inspection: every fetch rule of issue 3.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FaultServer, patternBytes } from '../../fixtures/fault-server.js';
import { isKilnError } from '../../../agent/errors.js';
import { makeCache, sha256, sha512 } from './helpers.js';

const MiB = 1024 * 1024;

let server: FaultServer;
t.before(async () => {
  server = await FaultServer.start();
});
t.teardown(() => server.close());

function cacheEntries(root: string): string[] {
  return readdirSync(join(root, 'images', 'sha256'));
}
function tmpEntries(root: string): string[] {
  return readdirSync(join(root, 'tmp'));
}

async function rejectsCode(t: Test, p: Promise<unknown>, code: string): Promise<Error & { code?: string; details?: Record<string, unknown> }> {
  try {
    await p;
  } catch (e) {
    t.ok(isKilnError(e), 'a KilnError');
    t.equal((e as { code: string }).code, code, `fails with ${code}`);
    return e as Error;
  }
  t.fail(`expected ${code}, but it succeeded`);
  return new Error('no error');
}

t.test('fetches, verifies and caches a raw image; a second request touches no network', async (t) => {
  const data = patternBytes(3 * MiB + 17, 1);
  const url = server.add('/basic.img', { data });
  const { cache, layout } = await makeCache(t);
  const events: Array<{ step: string; done?: number; total?: number }> = [];
  const img = await cache.ensure({ url, checksum: `sha256:${sha256(data)}`, minDisk: 5 * MiB, minRam: 64 * MiB }, (e) => events.push(e));
  t.equal(img.digest, `sha256:${sha256(data)}`);
  t.equal(img.format, 'raw');
  t.equal(img.virtualSize, data.length);
  t.equal(img.actualSize, data.length);
  t.equal(img.path, join(layout.images, 'sha256', sha256(data), 'disk'));
  t.same(img.sources, [url]);
  t.equal(img.minDisk, 5 * MiB);
  t.equal(img.minRam, 64 * MiB);
  t.same(img.inUseBy, []);
  t.ok(readFileSync(img.path).equals(data), 'cached bytes are the served bytes');
  const meta = JSON.parse(readFileSync(join(layout.images, 'sha256', sha256(data), 'meta.json'), 'utf8'));
  t.equal(meta.checksum, `sha256:${sha256(data)}`);
  t.ok(meta.fetchedAt && meta.lastUsedAt, 'times recorded');
  t.same(tmpEntries(layout.root), [], 'nothing left in tmp');
  const fetchEvents = events.filter((e) => e.step === 'fetch');
  t.ok(fetchEvents.length >= 2, 'progress reported');
  t.equal(fetchEvents.at(-1)!.done, data.length, 'progress reaches the end');
  t.equal(fetchEvents.at(-1)!.total, data.length, 'progress knows the total');

  const before = server.requests.length;
  const again = await cache.ensure({ url: server.url('/does-not-exist'), checksum: `sha256:${sha256(data)}` });
  t.equal(again.digest, img.digest);
  t.equal(server.requests.length, before, 'a cached checksum makes no request at all');
  t.same(again.sources, [url, server.url('/does-not-exist')], 'the new source is recorded');
});

t.test('sha512 checksums: verified, and found again without network', async (t) => {
  const data = patternBytes(2 * MiB, 2);
  const url = server.add('/sha512.img', { data });
  const { cache } = await makeCache(t);
  const img = await cache.ensure({ url, checksum: `sha512:${sha512(data)}` });
  t.equal(img.digest, `sha256:${sha256(data)}`, 'the cache is addressed by sha256 anyway');
  t.equal(img.checksum, `sha512:${sha512(data)}`);
  const before = server.requests.length;
  await cache.ensure({ url, checksum: `sha512:${sha512(data)}` });
  await cache.ensure({ url, checksum: `sha256:${sha256(data)}` });
  t.equal(server.requests.length, before, 'no request for either checksum once cached');
});

t.test('md5 and sha1 are refused unless allowed; unknown algorithms are refused', async (t) => {
  const data = patternBytes(64 * 1024, 3);
  const url = server.add('/weak.img', { data });
  const { cache } = await makeCache(t);
  const before = server.requests.length;
  await rejectsCode(t, cache.ensure({ url, checksum: 'md5:' + 'a'.repeat(32) }), 'KILN_CHECKSUM_ALGO');
  await rejectsCode(t, cache.ensure({ url, checksum: 'sha1:' + 'a'.repeat(40) }), 'KILN_CHECKSUM_ALGO');
  await rejectsCode(t, cache.ensure({ url, checksum: 'crc32:abcd' }), 'KILN_CHECKSUM_ALGO');
  await rejectsCode(t, cache.ensure({ url }), 'KILN_BAD_REQUEST');
  t.equal(server.requests.length, before, 'refused before any request');

  const weak = await makeCache(t, { allowWeakChecksums: true });
  const { createHash } = await import('node:crypto');
  const img = await weak.cache.ensure({ url, checksum: 'md5:' + createHash('md5').update(data).digest('hex') });
  t.equal(img.digest, `sha256:${sha256(data)}`, 'md5 accepted when allowed; sha256 still computed');
});

t.test('a wrong checksum leaves nothing in the cache or tmp', async (t) => {
  const data = patternBytes(MiB, 4);
  const url = server.add('/wrong.img', { data });
  const { cache, layout } = await makeCache(t);
  const e = await rejectsCode(t, cache.ensure({ url, checksum: `sha256:${'0'.repeat(64)}` }), 'KILN_CHECKSUM_MISMATCH');
  t.equal(e.details?.actual, sha256(data), 'details carry the actual digest');
  t.same(cacheEntries(layout.root), []);
  t.same(tmpEntries(layout.root), []);
  t.same(await cache.list(), []);
});

t.test('16 concurrent fetches of one URL make exactly one full GET', async (t) => {
  const data = patternBytes(4 * MiB, 5);
  const url = server.add('/concurrent.img', { data, faults: { bytesPerSecond: 16 * MiB } });
  const { cache, layout } = await makeCache(t);
  const checksum = `sha256:${sha256(data)}`;
  const results = await Promise.all(Array.from({ length: 16 }, () => cache.ensure({ url, checksum })));
  t.equal(server.fullGets('/concurrent.img'), 1, 'one full GET');
  t.equal(server.requests.filter((r) => r.path === '/concurrent.img').length, 1, 'one request at all');
  t.same(new Set(results.map((r) => r.digest)), new Set([checksum]));
  t.same(cacheEntries(layout.root), [sha256(data)]);
});

t.test('a drop at 40% resumes with Range + If-Range and transfers at most ~10% extra', async (t) => {
  const size = 8 * MiB;
  const data = patternBytes(size, 6);
  const url = server.add('/drop.img', { data, faults: { dropAt: { offset: Math.floor(size * 0.4), times: 1 } } });
  const { cache } = await makeCache(t);
  const img = await cache.ensure({ url, checksum: `sha256:${sha256(data)}` });
  t.ok(readFileSync(img.path).equals(data));
  const reqs = server.requests.filter((r) => r.path === '/drop.img');
  t.equal(reqs.length, 2, 'one retry');
  t.equal(reqs[1]!.status, 206, 'the retry got a partial response');
  t.match(reqs[1]!.range, /^bytes=\d+-$/);
  t.match(reqs[1]!.ifRange, /^"kiln-test-\d+"$/, 'If-Range carries the ETag');
  const sent = server.bytesSent('/drop.img');
  t.ok(sent <= size * 1.1, `transferred ${sent} bytes for ${size} (${((sent / size - 1) * 100).toFixed(1)}% extra)`);
});

t.test('a server without Range support restarts cleanly from zero', async (t) => {
  const data = patternBytes(4 * MiB, 7);
  const url = server.add('/norange.img', { data, faults: { noRange: true, dropAt: { offset: 2 * MiB, times: 1 } } });
  const { cache } = await makeCache(t);
  const img = await cache.ensure({ url, checksum: `sha256:${sha256(data)}` });
  t.ok(readFileSync(img.path).equals(data), 'content correct after a restart');
  t.equal(server.fullGets('/norange.img'), 2, 'two full GETs: the first dropped');
});

t.test('no validators: a drop restarts from zero instead of trusting the bytes on disk', async (t) => {
  const data = patternBytes(4 * MiB, 8);
  const url = server.add('/novalid.img', { data, faults: { noValidators: true, dropAt: { offset: MiB, times: 1 } } });
  const { cache } = await makeCache(t);
  const img = await cache.ensure({ url, checksum: `sha256:${sha256(data)}` });
  t.ok(readFileSync(img.path).equals(data));
  t.notOk(server.requests.some((r) => r.path === '/novalid.img' && r.range), 'no Range without a validator');
});

t.test('content changed between ranges: If-Range fails, the download restarts with the new content', async (t) => {
  const oldData = patternBytes(4 * MiB, 9);
  const newData = patternBytes(4 * MiB, 10);
  const url = server.add('/changed.img', { data: oldData, faults: { dropAt: { offset: 2 * MiB, times: 1 }, changeTo: { data: newData, afterRequests: 1 } } });
  const { cache } = await makeCache(t);
  const img = await cache.ensure({ url, checksum: `sha256:${sha256(newData)}` });
  t.ok(readFileSync(img.path).equals(newData), 'the new content, whole');
  const reqs = server.requests.filter((r) => r.path === '/changed.img');
  t.equal(reqs[1]!.status, 200, 'the server answered the stale If-Range with the full body');

  // A broken server that ignores If-Range: its 206 carries a new ETag, which kiln refuses.
  const url2 = server.add('/changed2.img', { data: oldData, faults: { dropAt: { offset: 2 * MiB, times: 1 }, changeTo: { data: newData, afterRequests: 1 }, ignoreIfRange: true } });
  const img2 = await cache.ensure({ url: url2, checksum: `sha512:${sha512(newData)}` });
  t.ok(readFileSync(img2.path).equals(newData), 'no mix of old and new bytes');
});

t.test('a stalled body is abandoned after the stall timeout and resumed', async (t) => {
  const data = patternBytes(2 * MiB, 11);
  const url = server.add('/stall.img', { data, faults: { stallAt: { offset: MiB, ms: 5000, times: 1 } } });
  const { cache } = await makeCache(t, { fetchStallTimeout: 300 });
  const started = Date.now();
  const img = await cache.ensure({ url, checksum: `sha256:${sha256(data)}` });
  t.ok(readFileSync(img.path).equals(data));
  t.ok(Date.now() - started < 4000, 'did not wait for the stalled server');
  t.equal(server.requests.filter((r) => r.path === '/stall.img' && r.range).length, 1, 'resumed with a Range');
});

t.test('5xx answers are retried with backoff; persistent ones fail without leftovers', async (t) => {
  const data = patternBytes(MiB, 12);
  const url = server.add('/flaky.img', { data, faults: { status: { code: 503, times: 2 } } });
  const { cache, layout } = await makeCache(t);
  const img = await cache.ensure({ url, checksum: `sha256:${sha256(data)}` });
  t.equal(img.actualSize, data.length);
  t.equal(server.requests.filter((r) => r.path === '/flaky.img').length, 3);

  const url2 = server.add('/down.img', { data, faults: { status: { code: 502, times: 1000 } } });
  const e = await rejectsCode(t, cache.ensure({ url: url2, checksum: `sha256:${sha256(patternBytes(10, 1))}` }), 'KILN_FETCH_FAILED');
  t.equal(e.details?.status, 502);
  t.equal(server.requests.filter((r) => r.path === '/down.img').length, 5, '1 try + 4 retries');
  t.same(tmpEntries(layout.root), []);

  const url3 = server.add('/gone.img', { data, faults: { status: { code: 404, times: 1000 } } });
  await rejectsCode(t, cache.ensure({ url: url3, checksum: `sha256:${sha256(patternBytes(11, 1))}` }), 'KILN_FETCH_FAILED');
  t.equal(server.requests.filter((r) => r.path === '/gone.img').length, 1, '4xx is not retried');
});

t.test('redirects are followed up to the limit; a redirect loop fails', async (t) => {
  const data = patternBytes(MiB, 13);
  server.add('/target.img', { data });
  const url = server.add('/moved.img', { faults: { redirectTo: '/target.img' } });
  const { cache, layout } = await makeCache(t);
  const img = await cache.ensure({ url, checksum: `sha256:${sha256(data)}` });
  t.same(img.sources, [url], 'the source recorded is the URL asked for');
  const loop = server.add('/loop.img', { faults: { redirectLoop: true } });
  const e = await rejectsCode(t, cache.ensure({ url: loop, checksum: `sha256:${sha256(patternBytes(12, 1))}` }), 'KILN_FETCH_FAILED');
  t.equal(e.details?.reason, 'redirects');
  t.equal(server.requests.filter((r) => r.path === '/loop.img').length, 6, 'the first request + 5 redirects, then stop');
  t.same(tmpEntries(layout.root), []);
});

t.test('a Content-Length that disagrees with what arrived is an error', async (t) => {
  const data = patternBytes(MiB, 14);
  const url = server.add('/short.img', { data, faults: { declaredLength: 2 * MiB } });
  const { cache, layout } = await makeCache(t);
  const e = await rejectsCode(t, cache.ensure({ url, checksum: `sha256:${sha256(data)}` }), 'KILN_FETCH_FAILED');
  t.equal(e.details?.reason, 'length-mismatch');
  t.same(cacheEntries(layout.root), []);
  t.same(tmpEntries(layout.root), []);
});

t.test('the size cap stops a server that streams forever', async (t) => {
  const url = server.add('/endless.img', { faults: { endless: true } });
  const { cache, layout } = await makeCache(t, { fetchMaxBytes: 2 * MiB });
  await rejectsCode(t, cache.ensure({ url, checksum: `sha256:${sha256(patternBytes(13, 1))}` }), 'KILN_TOO_LARGE');
  t.same(tmpEntries(layout.root), []);
  const big = server.add('/big-declared.img', { data: patternBytes(3 * MiB, 15) });
  const e = await rejectsCode(t, cache.ensure({ url: big, checksum: `sha256:${sha256(patternBytes(14, 1))}` }), 'KILN_TOO_LARGE');
  t.equal(e.details?.bytes, 3 * MiB, 'refused on the declared length, before the body');
  t.same(tmpEntries(layout.root), []);
});

t.test('free space is checked before the download', async (t) => {
  const data = patternBytes(MiB, 16);
  const url = server.add('/space.img', { data });
  const { cache, layout } = await makeCache(t, { freeSpaceMargin: '1000T' });
  const e = await rejectsCode(t, cache.ensure({ url, checksum: `sha256:${sha256(data)}` }), 'KILN_NO_SPACE');
  t.ok((e.details?.needBytes as number) > 1e15);
  t.same(tmpEntries(layout.root), []);
});

t.test('ENOSPC mid-way gives KILN_NO_SPACE and removes the partial file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-enospc-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', dir]);
  t.teardown(() => {
    execFileSync('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  mkdirSync(join(dir, 'work'));
  // No Content-Length: the free-space check cannot see it coming, the write fails.
  const url = server.add('/fills-disk.img', { faults: { endless: true } });
  const { cache, layout } = await makeCache(t, {}, { dir: join(dir, 'work') });
  await rejectsCode(t, cache.ensure({ url, checksum: `sha256:${sha256(patternBytes(15, 1))}` }), 'KILN_NO_SPACE');
  t.same(tmpEntries(layout.root), [], 'partial file removed');
  t.same(cacheEntries(layout.root), []);
});

t.test('qcow2 images are inspected; a declared format that disagrees is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-q-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const q = join(dir, 'a.qcow2');
  execFileSync('qemu-img', ['create', '-f', 'qcow2', q, '64M'], { stdio: 'ignore' });
  const data = readFileSync(q);
  const url = server.add('/a.qcow2', { data });
  const { cache, layout } = await makeCache(t);
  await rejectsCode(t, cache.ensure({ url, checksum: `sha256:${sha256(data)}`, diskFormat: 'raw' }), 'KILN_FORMAT_MISMATCH');
  t.same(cacheEntries(layout.root), [], 'nothing cached after a format mismatch');
  t.same(tmpEntries(layout.root), []);
  const img = await cache.ensure({ url, checksum: `sha256:${sha256(data)}`, diskFormat: 'qcow2' });
  t.equal(img.format, 'qcow2');
  t.equal(img.virtualSize, 64 * MiB);
  await rejectsCode(t, cache.ensure({ url, checksum: `sha256:${sha256(data)}`, diskFormat: 'vmdk' }), 'KILN_FORMAT_MISMATCH');

  const b = join(dir, 'b.qcow2');
  execFileSync('qemu-img', ['create', '-f', 'qcow2', '-b', q, '-F', 'qcow2', b], { stdio: 'ignore' });
  const bad = readFileSync(b);
  const badUrl = server.add('/backed.qcow2', { data: bad });
  await rejectsCode(t, cache.ensure({ url: badUrl, checksum: `sha256:${sha256(bad)}` }), 'KILN_IMAGE_UNSAFE');
  t.same(cacheEntries(layout.root), [sha256(data)], 'the unsafe image is not cached');
  t.same(tmpEntries(layout.root), []);
  t.notOk(existsSync(join(layout.images, 'sha256', sha256(bad))));
});
