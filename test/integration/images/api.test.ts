// The images area end to end in-process: the real API server on a unix socket, the real
// ImageCache, the CLI's ApiClient; NDJSON progress, error bodies with registry codes.
import t from 'tap';
import { join } from 'node:path';
import { createApiServer } from '../../../agent/api/server.js';
import { listenOnSocket, removeSocket } from '../../../agent/api/socket.js';
import { ApiClient, unixSocketConnector } from '../../../agent/cli/client.js';
import type { ImageJson } from '../../../agent/api/protocol.js';
import { System } from '../../../agent/system.js';
import { silentLogger } from '../../../agent/log.js';
import { isKilnError } from '../../../agent/errors.js';
import { FaultServer, patternBytes } from '../../fixtures/fault-server.js';
import { makeCache, sha256 } from './helpers.js';

const MiB = 1024 * 1024;

t.test('POST /v1/images streams progress; ls, inspect, rm, prune, verify answer per contract', async (t) => {
  const server = await FaultServer.start();
  t.teardown(() => server.close());
  const env = await makeCache(t);
  const api = createApiServer({
    services: { system: new System(env.config, { cache: () => env.cache.stats() }), metrics: env.metrics, images: env.cache },
    log: silentLogger(),
    bodyMaxBytes: MiB,
  });
  const socket = join(env.dir, 'api.sock');
  await listenOnSocket(api, socket, 0o600, '');
  t.teardown(() => new Promise<void>((r) => { api.closeAllConnections(); api.close(() => r()); removeSocket(socket); }));
  const client = new ApiClient(unixSocketConnector(socket), socket);

  const data = patternBytes(6 * MiB, 900);
  const url = server.add('/api.img', { data, faults: { bytesPerSecond: 8 * MiB } });
  const events: Array<{ step: string; done?: number; total?: number; rate?: number }> = [];
  const img = await client.request<ImageJson>('POST', '/v1/images', { url, checksum: `sha256:${sha256(data)}`, minDisk: MiB }, (e) => events.push(e));
  t.equal(img.digest, `sha256:${sha256(data)}`);
  t.equal(img.minDisk, MiB);
  const fetches = events.filter((e) => e.step === 'fetch');
  t.ok(fetches.length >= 2, `NDJSON progress lines arrived (${fetches.length})`);
  t.ok(fetches.some((e) => (e.rate ?? 0) > 0), 'with a rate');
  t.equal(fetches.at(-1)!.total, data.length);

  const list = await client.request<ImageJson[]>('GET', '/v1/images');
  t.same(list.map((i) => i.digest), [img.digest]);
  const one = await client.request<ImageJson>('GET', `/v1/images/${img.digest.slice(7, 19)}`);
  t.equal(one.path, img.path);
  const status = await client.request<{ cache: { count: number; bytes: number } }>('GET', '/v1/status');
  t.same(status.cache, { count: 1, bytes: data.length });

  const errCode = async (p: Promise<unknown>) => p.then(() => 'resolved', (e) => (isKilnError(e) ? e.code : String(e)));
  t.equal(await errCode(client.request('POST', '/v1/images', { url, checksum: 'md5:' + 'a'.repeat(32) })), 'KILN_CHECKSUM_ALGO');
  t.equal(await errCode(client.request('POST', '/v1/images', { url, checksum: `sha256:${sha256(data)}`, bogus: 1 })), 'KILN_BAD_REQUEST', 'unknown fields refused');
  t.equal(await errCode(client.request('POST', '/v1/images', { url: server.url('/nope.img'), checksum: `sha256:${'1'.repeat(64)}` }, () => undefined)), 'KILN_FETCH_FAILED', 'an error arrives as the last NDJSON line');
  t.equal(await errCode(client.request('GET', '/v1/images/zz')), 'KILN_BAD_REQUEST');
  t.equal(await errCode(client.request('GET', `/v1/images/${'e'.repeat(64)}`)), 'KILN_NOT_FOUND');

  await env.cache.acquire(img.digest, 'web-1');
  t.equal(await errCode(client.request('DELETE', `/v1/images/${img.digest}`)), 'KILN_IN_USE');
  const pruned = await client.request<{ removed: string[] }>('POST', '/v1/cache/prune', {});
  t.same(pruned.removed, [], 'prune spares the image in use');
  const verified = await client.request<{ ok: string[] }>('POST', '/v1/cache/verify', undefined, () => undefined);
  t.same(verified.ok, [img.digest]);
  await env.cache.release(img.digest, 'web-1');
  t.same(await client.request('DELETE', `/v1/images/${img.digest}`), { removed: img.digest });
  t.same(await client.request('GET', '/v1/images'), []);
  t.match(await client.request<string>('GET', '/metrics'), /kiln_image_fetches_total\{result="downloaded"\} 1/);
});
