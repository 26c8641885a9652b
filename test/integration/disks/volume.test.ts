// Boot volumes on real block devices: loop devices made here with losetup, and an LVM logical
// volume on one. Teardown undoes every step (umount, vgremove, pvremove, losetup -d) even when
// an assertion failed half-way.
import t from 'tap';
import { closeSync, mkdirSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { claimBlockDevice } from '../../../agent/disks/block-device.js';
import { MiB, loopDevice, setupEnv, sh, type Teardown } from './helpers.js';

function readBytes(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    const got = readSync(fd, buf, 0, length, offset);
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

function writeBytes(path: string, offset: number, data: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
}

t.test('boot volume on a loop device: size from the device, content equal, old bytes in holes overwritten', async (t) => {
  const env = await setupEnv(t);
  const { dev } = await loopDevice(t, env.root, 96 * MiB);
  // Old data where the image has a hole: the volume must read as the image there (zeros).
  writeBytes(dev, 40 * MiB, randomBytes(MiB));
  const disk = await env.disks.create({ target: dev, image: env.qcow2, mode: 'volume' });
  t.same(disk, { device: dev, format: 'raw', virtualSize: 96 * MiB, mode: 'volume' });
  t.equal(Number((await sh('blockdev', ['--getsize64', dev])).trim()), disk.virtualSize, 'size as the kernel reports it');
  t.ok(await env.qemuImg.compare(env.raw.path, 'raw', dev, 'raw'), 'qemu-img compare: device equals the image (device tail is zero)');
  t.same(readBytes(dev, 0, MiB), readBytes(env.raw.path, 0, MiB), 'first MiB byte-equal');
  t.same(readBytes(dev, 40 * MiB, MiB), Buffer.alloc(MiB), 'the hole reads as zeros, old bytes gone');
  t.same(readBytes(dev, 20 * MiB, 512 * 1024), readBytes(env.raw.path, 20 * MiB, 512 * 1024));
});

t.test('a device smaller than the image, or than min_disk, or than the size asked, is refused with the numbers', async (t) => {
  const env = await setupEnv(t);
  const small = await loopDevice(t, env.root, 32 * MiB, 'small');
  await t.rejects(env.disks.create({ target: small.dev, image: env.qcow2, mode: 'volume' }),
    { code: 'KILN_DISK_TOO_SMALL', details: { requiredBytes: 64 * MiB, requestedBytes: 32 * MiB } });
  const mid = await loopDevice(t, env.root, 80 * MiB, 'mid');
  await t.rejects(env.disks.create({ target: mid.dev, image: { ...env.qcow2, minDisk: 100 * MiB }, mode: 'volume' }),
    { code: 'KILN_DISK_TOO_SMALL', details: { requiredBytes: 100 * MiB, requestedBytes: 80 * MiB, reason: 'min_disk' } });
  await t.rejects(env.disks.create({ target: mid.dev, image: env.qcow2, sizeBytes: 90 * MiB, mode: 'volume' }),
    { code: 'KILN_DISK_TOO_SMALL', details: { requiredBytes: 90 * MiB, requestedBytes: 80 * MiB } });
  await t.rejects(env.disks.create({ target: mid.dev, image: { ...env.qcow2, minRam: 2048 * MiB }, mode: 'volume', memoryBytes: 1024 * MiB }),
    { code: 'KILN_MEMORY_TOO_SMALL', details: { requiredBytes: 2048 * MiB, requestedBytes: 1024 * MiB } });
  t.same(readBytes(mid.dev, 0, 4096), Buffer.alloc(4096), 'nothing was written to the refused device');
});

t.test('a mounted device is refused; the claim keeps the device from being mounted while kiln writes', async (t) => {
  const env = await setupEnv(t);
  const { dev } = await loopDevice(t, env.root, 96 * MiB, 'fs');
  await sh('mkfs.ext4', ['-q', '-F', dev]);
  const mnt = join(env.root, 'mnt');
  mkdirSync(mnt);
  await sh('mount', [dev, mnt]);
  let mounted = true;
  t.teardown(async () => {
    if (mounted) await sh('umount', [mnt]).catch(() => undefined);
  });
  await t.rejects(env.disks.create({ target: dev, image: env.qcow2, mode: 'volume' }), { code: 'KILN_IN_USE', details: { reasons: [new RegExp(`mounted at ${mnt}`)] } });
  await sh('umount', [mnt]);
  mounted = false;

  const claim = claimBlockDevice(dev);
  try {
    t.equal(claim.sizeBytes, 96 * MiB, 'BLKGETSIZE64');
    await t.rejects(sh('mount', [dev, mnt]), { code: 'KILN_TOOL_FAILED' }, 'mount fails while kiln holds the device');
    t.throws(() => claimBlockDevice(dev), { code: 'KILN_IN_USE' }, 'a second claim (another kiln request) is refused');
  } finally {
    claim.release();
  }
  const again = claimBlockDevice(dev);
  again.release();
  t.pass('claimable again after release');
});

/** An LVM volume group on a loop device; LVs are reachable as block devices either through
 * device-mapper or, on kernels without it, as loop devices over the LV's extents on the PV. */
async function volumeGroup(t: Teardown, dir: string) {
  const pv = await loopDevice(t, dir, 160 * MiB, 'pv');
  const vg = `kilntest${process.pid}x${randomBytes(2).toString('hex')}`;
  const scope = ['--devices', pv.dev];
  // /dev/mapper/control can exist while the kernel has no device-mapper driver; /proc/misc knows.
  const dm = /\bdevice-mapper\b/.test(readFileSync('/proc/misc', 'utf8'));
  const noDm = dm ? [] : ['--driverloaded', 'n'];
  await sh('pvcreate', ['-q', ...scope, pv.dev]);
  t.teardown(async () => {
    await sh('pvremove', ['-q', '-ff', '-y', ...scope, pv.dev]).catch(() => undefined);
  });
  await sh('vgcreate', ['-q', '-s', '1M', ...scope, vg, pv.dev]);
  t.teardown(async () => {
    await sh('vgremove', ['-q', '-y', '-f', ...noDm, ...scope, vg]).catch(() => undefined);
  });
  const lv = async (name: string, size: number): Promise<string> => {
    await sh('lvcreate', ['-q', '-y', ...scope, ...noDm, ...(dm ? [] : ['-an', '-Zn']), '-L', `${size}b`, '-n', name, vg]);
    if (dm) return `/dev/${vg}/${name}`;
    // Without device-mapper: map the LV's (single, linear) segment with a loop device at its offset on the PV.
    const lvs = JSON.parse(await sh('lvs', [...scope, '--reportformat', 'json', '--units', 'b', '--nosuffix', '-o', 'lv_size,seg_pe_ranges,vg_extent_size', `${vg}/${name}`])) as { report: Array<{ lv: Array<Record<string, string>> }> };
    const row = lvs.report[0]!.lv[0]!;
    const pvs = JSON.parse(await sh('pvs', [...scope, '--reportformat', 'json', '--units', 'b', '--nosuffix', '-o', 'pe_start', pv.dev])) as { report: Array<{ pv: Array<Record<string, string>> }> };
    const firstPe = Number(/:(\d+)-/.exec(row.seg_pe_ranges!)![1]);
    const offset = Number(pvs.report[0]!.pv[0]!.pe_start) + firstPe * Number(row.vg_extent_size);
    const dev = (await sh('losetup', ['--find', '--show', '--offset', String(offset), '--sizelimit', row.lv_size!, pv.dev])).trim();
    t.teardown(async () => {
      await sh('losetup', ['-d', dev]).catch(() => undefined);
    });
    return dev;
  };
  return { pv: pv.dev, vg, lv, dm };
}

t.test('boot volume on an LVM logical volume; the neighbouring LV and the PV itself are safe', async (t) => {
  const env = await setupEnv(t);
  const group = await volumeGroup(t, env.root);
  const root = await group.lv('root', 72 * MiB);
  const other = await group.lv('other', 16 * MiB);
  const canary = randomBytes(64 * 1024);
  writeBytes(other, 0, canary);
  writeBytes(root, 10 * MiB, randomBytes(MiB));

  const disk = await env.disks.create({ target: root, image: env.qcow2, mode: 'volume' });
  t.equal(disk.virtualSize, 72 * MiB, 'the LV size, read from the device');
  t.ok(await env.qemuImg.compare(env.raw.path, 'raw', root, 'raw'), 'qemu-img compare: the LV equals the image');
  t.same(readBytes(other, 0, canary.length), canary, 'the neighbouring LV is untouched');
  const pvHead = readBytes(group.pv, 512, 32).toString('latin1');
  t.match(pvHead, /^LABELONE/, 'the PV label survives');

  await t.rejects(env.disks.create({ target: group.pv, image: env.qcow2, mode: 'volume' }), { code: 'KILN_IN_USE' }, 'the PV itself is refused');
  await t.rejects(env.disks.create({ target: other, image: env.qcow2, mode: 'volume' }),
    { code: 'KILN_DISK_TOO_SMALL', details: { requiredBytes: 64 * MiB, requestedBytes: 16 * MiB } }, 'a too-small LV is refused');
  t.same(readBytes(other, 0, canary.length), canary, 'and left as it was');
  t.comment(group.dm ? 'LVs through device-mapper' : 'kernel without device-mapper: LVs mapped by extent with loop devices');
});
