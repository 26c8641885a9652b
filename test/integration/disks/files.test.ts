// Overlay and flat disks with the real qemu-img: chains, sizes, contents, private files, and
// the size policy's refusals with their numbers.
import t from 'tap';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MiB, infoChain, setupEnv, sh } from './helpers.js';

t.test('overlay on a qcow2 base: chain, pinned backing format, matched clusters, grown size, same content', async (t) => {
  const env = await setupEnv(t);
  const target = join(env.root, 'instances', 'vm1', 'disk.qcow2');
  const disk = await env.disks.create({ target, image: env.qcow2, sizeBytes: 256 * MiB, mode: 'overlay' });
  t.same(disk, { path: target, format: 'qcow2', virtualSize: 256 * MiB, mode: 'overlay' });
  const chain = await infoChain(target, 'qcow2');
  t.equal(chain.length, 2, 'overlay + base');
  t.equal(chain[0]!['virtual-size'], 256 * MiB, 'overlay virtual size is the asked size');
  t.equal(chain[0]!['backing-filename'], env.qcow2.path, 'absolute backing path in the cache');
  t.equal(chain[0]!['backing-filename-format'], 'qcow2', 'backing format pinned');
  t.equal(chain[0]!['cluster-size'], 131072, 'cluster size of the base');
  t.equal(chain[1]!['filename'], env.qcow2.path);
  t.equal(chain[1]!['virtual-size'], 64 * MiB);
  t.ok(await env.qemuImg.compare(target, 'qcow2', env.qcow2.path, 'qcow2'), 'guest sees the base content (grown part reads zero)');
  t.equal(statSync(target).mode & 0o777, 0o600, 'file 0600');
  t.equal(statSync(join(env.root, 'instances')).mode & 0o777, 0o700, 'folders 0700');
  t.same(readdirSync(join(env.root, 'instances', 'vm1')), ['disk.qcow2'], 'nothing else left beside it');
});

t.test('overlay on a raw base, no size asked: the image size', async (t) => {
  const env = await setupEnv(t);
  const target = join(env.root, 'raw-overlay.qcow2');
  const disk = await env.disks.create({ target, image: env.raw, mode: 'overlay' });
  t.equal(disk.virtualSize, 64 * MiB);
  const chain = await infoChain(target, 'qcow2');
  t.equal(chain[0]!['backing-filename-format'], 'raw');
  t.equal(chain[0]!['cluster-size'], 65536, 'qemu default clusters over raw');
  t.ok(await env.qemuImg.compare(target, 'qcow2', env.raw.path, 'raw'));
});

for (const flatFormat of ['raw', 'qcow2'] as const) {
  t.test(`flat ${flatFormat}: full copy, content equal, sparse, grown, no backing file`, async (t) => {
    const env = await setupEnv(t, { flags: { flatFormat } });
    const target = join(env.root, `flat.${flatFormat}`);
    const disk = await env.disks.create({ target, image: env.qcow2, sizeBytes: 128 * MiB, mode: 'flat' });
    t.same(disk, { path: target, format: flatFormat, virtualSize: 128 * MiB, mode: 'flat' });
    const chain = await infoChain(target, flatFormat);
    t.equal(chain.length, 1, 'no backing chain');
    t.equal(chain[0]!['virtual-size'], 128 * MiB);
    t.ok(await env.qemuImg.compare(target, flatFormat, env.raw.path, 'raw'), 'qemu-img compare: equal to the image');
    const allocated = statSync(target).blocks * 512;
    t.ok(allocated < 8 * MiB, `sparse: ${allocated} bytes allocated for 128 MiB virtual (data is ~1.5 MiB)`);
    t.equal(statSync(target).mode & 0o777, 0o600);
  });
}

t.test('flat copy from a raw base into qcow2 via an odd size: rounded up to whole sectors', async (t) => {
  const env = await setupEnv(t);
  const disk = await env.disks.create({ target: join(env.root, 'odd.qcow2'), image: env.raw, sizeBytes: 64 * MiB + 1000, mode: 'flat' });
  t.equal(disk.virtualSize, 64 * MiB + 1024);
});

t.test('size policy refusals carry their code and numbers, and leave no file', async (t) => {
  const env = await setupEnv(t);
  const target = join(env.root, 'small.qcow2');
  for (const mode of ['overlay', 'flat'] as const) {
    await t.rejects(env.disks.create({ target, image: env.qcow2, sizeBytes: 32 * MiB, mode }),
      { code: 'KILN_DISK_TOO_SMALL', details: { requiredBytes: 64 * MiB, requestedBytes: 32 * MiB, reason: 'virtual size' } }, `${mode}: below the virtual size (no shrinking)`);
    await t.rejects(env.disks.create({ target, image: { ...env.qcow2, minDisk: 512 * MiB }, sizeBytes: 256 * MiB, mode }),
      { code: 'KILN_DISK_TOO_SMALL', details: { requiredBytes: 512 * MiB, requestedBytes: 256 * MiB, reason: 'min_disk' } }, `${mode}: below min_disk`);
    await t.rejects(env.disks.create({ target, image: { ...env.qcow2, minRam: 1024 * MiB }, mode, memoryBytes: 512 * MiB }),
      { code: 'KILN_MEMORY_TOO_SMALL', details: { requiredBytes: 1024 * MiB, requestedBytes: 512 * MiB } }, `${mode}: below min_ram`);
  }
  const grown = await env.disks.create({ target, image: { ...env.qcow2, minDisk: 96 * MiB }, mode: 'overlay' });
  t.equal(grown.virtualSize, 96 * MiB, 'no size asked with min_disk above the image: min_disk');
  t.same(readdirSync(env.root).sort(), ['small.qcow2', 'state']);
});

t.test('a base whose file changed under the cache is refused before use', async (t) => {
  const env = await setupEnv(t);
  await sh('qemu-img', ['resize', '-f', 'raw', env.raw.path, String(80 * MiB)]);
  await t.rejects(env.disks.create({ target: join(env.root, 'x.qcow2'), image: env.raw, mode: 'overlay' }),
    { code: 'KILN_IMAGE_UNSAFE', details: { reasons: [/virtual size/] } });
});
