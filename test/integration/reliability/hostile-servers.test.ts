// Hostile image servers, through the real kilnd API (test/integration/images covers the same
// faults one level down, on ImageCache; this checks what a caller of the socket sees): a
// slowloris body that stalls at the same byte on every attempt, headers that never come, an
// endless body, a redirect loop, and two servers that change the content between ranges, one
// honest about it (new ETag: the If-Range validator restarts the download) and one lying (same
// ETag: only the checksum can tell). Each answer carries its code, kilnd stays responsive while
// the bad download runs, and nothing partial reaches the cache.
import t from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { patternBytes } from '../../fixtures/fault-server.js';
import { call, consistencyProblems, sha256, startFaultServer, startKilnd } from './helpers.js';

const MiB = 1024 * 1024;
const server = await startFaultServer();
t.teardown(() => server.close());
const kilnd = await startKilnd(t, { args: ['--fetch-stall-timeout', '300ms', '--fetch-retries', '2', '--fetch-retry-backoff', '0', '--fetch-max-bytes', '4M'] });
const api = (method: string, path: string, body?: unknown) => call(kilnd.socket, method, path, body);

async function fetchWhileServing(t: Tap.Test, url: string, checksum: string) {
  const started = Date.now();
  const pending = api('POST', '/v1/images', { url, checksum });
  // The bad download occupies kilnd; other callers must still be served promptly.
  const status = await api('GET', '/v1/status');
  t.equal(status.status, 200, 'kilnd answers others meanwhile');
  const r = await pending;
  return { r, ms: Date.now() - started };
}
declare namespace Tap { type Test = import('tap').Test }

t.test('a slowloris body that stalls at one byte on every attempt: stall timeout, bounded retries', async (t) => {
  const data = patternBytes(2 * MiB, 21);
  const url = server.add('/slowloris.img', { data, faults: { stallAt: { offset: MiB, ms: 60_000, times: 1000 } } });
  const { r, ms } = await fetchWhileServing(t, url, `sha256:${sha256(data)}`);
  t.equal(r.status, 502, r.text.slice(0, 300));
  t.equal(r.json?.error?.code, 'KILN_FETCH_FAILED');
  t.equal(r.json?.error?.details?.reason, 'stall');
  t.ok(ms < 15_000, `gave up after ${ms} ms (3 attempts x 300 ms stall timeout), not 60 s`);
  t.equal(server.requests.filter((q) => q.path === '/slowloris.img').length, 3, '1 try + 2 retries');
  t.ok(server.requests.filter((q) => q.path === '/slowloris.img').slice(1).every((q) => q.range === `bytes=${MiB}-`), 'retries resumed at the stalled byte');
  t.same(await consistencyProblems(kilnd), [], 'nothing in the cache; tmp holds only a resumable part');
});

t.test('headers that never come hit the stall timeout too', async (t) => {
  const data = patternBytes(MiB, 22);
  const url = server.add('/mute.img', { data, faults: { headerDelayMs: 60_000 } });
  const { r, ms } = await fetchWhileServing(t, url, `sha256:${sha256(data)}`);
  t.equal(r.json?.error?.code, 'KILN_FETCH_FAILED', r.text.slice(0, 300));
  t.ok(ms < 15_000, `gave up after ${ms} ms`);
});

t.test('an endless body hits the size cap', async (t) => {
  const url = server.add('/endless.img', { faults: { endless: true } });
  const { r } = await fetchWhileServing(t, url, `sha256:${'1'.repeat(64)}`);
  t.equal(r.status, 413, r.text.slice(0, 300));
  t.equal(r.json?.error?.code, 'KILN_TOO_LARGE');
  const sent = server.bytesSent('/endless.img');
  t.ok(sent < 64 * MiB, `stopped reading after ${Math.round(sent / MiB)} MiB (cap 4 MiB)`);
  t.same(await consistencyProblems(kilnd), []);
});

t.test('a redirect loop stops at the redirect limit', async (t) => {
  const url = server.add('/loop.img', { faults: { redirectLoop: true } });
  const { r } = await fetchWhileServing(t, url, `sha256:${'2'.repeat(64)}`);
  t.equal(r.json?.error?.code, 'KILN_FETCH_FAILED', r.text.slice(0, 300));
  t.equal(r.json?.error?.details?.reason, 'redirects');
  t.equal(server.requests.filter((q) => q.path === '/loop.img').length, 6, 'the first request + 5 redirects (the default limit)');
});

t.test('content that changes between ranges: the validator restarts, the checksum decides', async (t) => {
  const oldData = patternBytes(3 * MiB, 23);
  const newData = patternBytes(3 * MiB, 24);
  // Honest server, broken If-Range handling: its 206 of the new content carries a new ETag.
  const url = server.add('/changing.img', { data: oldData, faults: { dropAt: { offset: MiB, times: 1 }, changeTo: { data: newData, afterRequests: 1 }, ignoreIfRange: true } });
  const r = await api('POST', '/v1/images', { url, checksum: `sha256:${sha256(oldData)}` });
  t.equal(r.status, 422, r.text.slice(0, 300));
  t.equal(r.json?.error?.code, 'KILN_CHECKSUM_MISMATCH', 'the new bytes are not what was asked for');
  t.equal(r.json?.error?.details?.actual, sha256(newData), 'all new bytes: the old prefix was dropped when the ETag changed');
  t.same(await consistencyProblems(kilnd), []);
  t.same((await api('GET', '/v1/images')).json, [], 'nothing cached');
});

t.test('a lying server (same ETag, new bytes after a drop): only the checksum catches the mix', async (t) => {
  const oldData = patternBytes(3 * MiB, 25);
  const newData = patternBytes(3 * MiB, 26);
  let requests = 0;
  const liar = createServer((req, res) => {
    requests++;
    res.on('error', () => undefined);
    const headers = { etag: '"always-the-same"', 'last-modified': 'Mon, 01 Jan 2024 00:00:00 GMT', 'accept-ranges': 'bytes' };
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (!m) {
      // First answer: the old content, cut after 1 MiB.
      res.writeHead(200, { ...headers, 'content-length': oldData.length });
      res.write(oldData.subarray(0, MiB), () => setTimeout(() => res.destroy(), 50));
      return;
    }
    const from = Number(m[1]);
    res.writeHead(206, { ...headers, 'content-length': newData.length - from, 'content-range': `bytes ${from}-${newData.length - 1}/${newData.length}` });
    res.end(newData.subarray(from));
  });
  await new Promise<void>((r) => liar.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => liar.close(() => r())));
  const url = `http://127.0.0.1:${(liar.address() as AddressInfo).port}/liar.img`;
  for (const data of [oldData, newData]) {
    requests = 0;
    const r = await api('POST', '/v1/images', { url, checksum: `sha256:${sha256(data)}` });
    t.equal(r.status, 422, r.text.slice(0, 300));
    t.equal(r.json?.error?.code, 'KILN_CHECKSUM_MISMATCH', 'a resumed mix of old and new bytes is refused');
    t.equal(requests, 2, 'it was resumed with a Range (the validator could not tell)');
    t.same((await api('GET', '/v1/images')).json, [], 'nothing cached');
    t.same(await consistencyProblems(kilnd), []);
  }
});
