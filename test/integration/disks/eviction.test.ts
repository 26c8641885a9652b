// The image cache and disks together, for real: an image fetched over loopback HTTP into a real
// ImageCache, an overlay made on it through StandaloneDisks (POST /v1/disks's service), and
// eviction (prune, rm) refusing the base while the overlay uses it.
import t from 'tap';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../../agent/config/load.js';
import { silentLogger } from '../../../agent/log.js';
import { MetricsRegistry } from '../../../agent/metrics.js';
import { ensureStateLayout, stateLayout } from '../../../agent/statedir.js';
import { QemuImg } from '../../../agent/tools/qemu-img.js';
import { ImageCache } from '../../../agent/images/cache.js';
import { DiskService } from '../../../agent/disks/service.js';
import { StandaloneDisks, type StandaloneDiskJson } from '../../../agent/disks/standalone.js';
import { createApiServer } from '../../../agent/api/server.js';
import { System } from '../../../agent/system.js';
import { ApiClient, unixSocketConnector } from '../../../agent/cli/client.js';
import { buildDiskCreateBody } from '../../../agent/cli/commands/disk-create.js';
import { MiB, infoChain, setupEnv } from './helpers.js';

async function serveFile(t: { teardown(fn: () => unknown): void }, body: Buffer): Promise<string> {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/image.qcow2`;
}

async function setup(t: { teardown(fn: () => unknown): void }) {
  // setupEnv makes a qcow2 with real content; it is served to the real cache from here.
  const src = await setupEnv(t);
  const bytes = readFileSync(src.qcow2.path);
  const url = await serveFile(t, bytes);
  const layout = stateLayout(join(src.root, 'kilnstate'));
  ensureStateLayout(layout);
  const config = loadConfig({ flags: { stateDir: layout.root, freeSpaceMargin: 0 } });
  const qemuImg = QemuImg.fromConfig(config);
  const cache = new ImageCache({ layout, config, log: silentLogger(), metrics: new MetricsRegistry(), qemuImg });
  t.teardown(() => cache.close());
  await cache.init();
  const image = await cache.ensure({ url, checksum: `sha256:${createHash('sha256').update(bytes).digest('hex')}` });
  const disks = new DiskService({ qemuImg, config, log: silentLogger() });
  const standalone = new StandaloneDisks({ images: cache, disks, config, log: silentLogger() });
  return { root: src.root, cache, image, disks, standalone, qemuImg, rawPath: src.raw.path };
}

t.test('eviction refuses a base an overlay uses, and frees it once the overlay is gone', async (t) => {
  const s = await setup(t);
  const target = join(s.root, 'vms', 'a.qcow2');
  const disk = await s.standalone.create({ target, image: s.image.digest.slice(0, 19), sizeBytes: 128 * MiB });
  t.equal(disk.mode, 'overlay', 'configured default mode');
  t.equal(disk.holder, `disk:${target}`);
  const chain = await infoChain(target, 'qcow2');
  t.equal(chain[0]!['backing-filename'], s.image.path, 'backs onto the cached file');
  t.ok(await s.qemuImg.compare(target, 'qcow2', s.rawPath, 'raw'), 'overlay shows the image');

  t.same((await s.cache.get(s.image.digest)).inUseBy, [`disk:${target}`], 'the use is recorded in the cache');
  const pruned = await s.cache.prune({});
  t.same(pruned.removed, [], 'prune (evict everything unused) leaves the base');
  t.ok(existsSync(s.image.path));
  await t.rejects(s.cache.remove(s.image.digest), { code: 'KILN_IN_USE', details: { inUseBy: [`disk:${target}`] } }, 'rm refuses it');
  t.ok(await s.qemuImg.compare(target, 'qcow2', s.rawPath, 'raw'), 'overlay still intact after eviction attempts');

  unlinkSync(target);
  t.same(await s.standalone.dropStaleReferences(), [`disk:${target}`], 'the deleted overlay lets go');
  t.same((await s.cache.prune({})).removed, [s.image.digest], 'now the base is evictable');
});

t.test('flat copies and failed creates hold no reference', async (t) => {
  const s = await setup(t);
  const flat = await s.standalone.create({ target: join(s.root, 'flat.qcow2'), image: s.image.digest, mode: 'flat' });
  t.equal(flat.holder, undefined);
  t.same((await s.cache.get(s.image.digest)).inUseBy, [], 'flat copy released the base');
  await t.rejects(s.standalone.create({ target: join(s.root, 'small.qcow2'), image: s.image.digest, sizeBytes: MiB }), { code: 'KILN_DISK_TOO_SMALL' });
  t.same((await s.cache.get(s.image.digest)).inUseBy, [], 'a refused create released its reference');
  await t.rejects(s.standalone.create({ target: join(s.root, 'x.qcow2'), image: 'sha256:' + '0'.repeat(64) }), { code: 'KILN_NOT_FOUND' });
  t.same((await s.cache.prune({})).removed, [s.image.digest]);
  t.ok(await s.qemuImg.compare(join(s.root, 'flat.qcow2'), 'qcow2', s.rawPath, 'raw'), 'the flat copy survives its base');
});

t.test('POST /v1/disks over the real API server and the CLI client: progress, result, errors with numbers', async (t) => {
  const s = await setup(t);
  const metrics = new MetricsRegistry();
  const config = loadConfig({ flags: { stateDir: join(s.root, 'kilnstate') } });
  const server = createApiServer({ services: { system: new System(config), metrics, disks: s.standalone }, log: silentLogger(), bodyMaxBytes: 1024 * 1024 });
  const sock = join(s.root, 'kiln.sock');
  await new Promise<void>((r) => server.listen(sock, r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const client = new ApiClient(unixSocketConnector(sock), sock);
  const target = join(s.root, 'api', 'disk.qcow2');
  const steps: string[] = [];
  const body = buildDiskCreateBody(target, { image: s.image.digest.slice(7, 19), size: '128M' });
  const disk = await client.request<StandaloneDiskJson>('POST', '/v1/disks', body, (e) => steps.push(e.step));
  t.equal(disk.path, target);
  t.equal(disk.virtualSize, 128 * MiB);
  t.equal(disk.image.digest, s.image.digest);
  t.ok(steps.includes('disk: create overlay'), `progress streamed: ${steps.join(', ')}`);
  t.ok(await s.qemuImg.compare(target, 'qcow2', s.rawPath, 'raw'));
  const err = await client.request('POST', '/v1/disks', buildDiskCreateBody(join(s.root, 'api', 'small.qcow2'), { image: s.image.digest, size: '1M' })).catch((e: unknown) => e);
  t.match(err, { code: 'KILN_DISK_TOO_SMALL', details: { requiredBytes: 64 * MiB, requestedBytes: MiB } }, 'error code and numbers over the wire');
  const err2 = await client.request('POST', '/v1/disks', { target, image: s.image.digest }).catch((e: unknown) => e);
  t.match(err2, { code: 'KILN_CONFLICT' }, 'an existing disk is never overwritten');
  t.same((await s.cache.get(s.image.digest)).inUseBy, [`disk:${target}`], 'only the disk that exists holds the base');
});
