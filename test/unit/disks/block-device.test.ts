import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { claimBlockDevice, deviceAndPartitions, usageReasons, type HostRoots } from '../../../agent/disks/block-device.js';

/** A fake /proc and /sys: device 7:5 (loop5) with partition loop5p1 (259:1). */
function fakeHost(t: { teardown(fn: () => void): void }, o: { mountinfo?: string; swaps?: string; holders?: string[]; partHolders?: string[]; loopBacking?: string } = {}): HostRoots {
  const root = mkdtempSync(join(tmpdir(), 'kiln-fakehost-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dev = join(root, 'sys/devices/virtual/block/loop5');
  mkdirSync(join(dev, 'holders'), { recursive: true });
  mkdirSync(join(dev, 'loop5p1/holders'), { recursive: true });
  writeFileSync(join(dev, 'dev'), '7:5\n');
  writeFileSync(join(dev, 'loop5p1/dev'), '259:1\n');
  writeFileSync(join(dev, 'loop5p1/partition'), '1\n');
  for (const h of o.holders ?? []) mkdirSync(join(dev, 'holders', h));
  for (const h of o.partHolders ?? []) mkdirSync(join(dev, 'loop5p1/holders', h));
  mkdirSync(join(root, 'sys/dev/block'), { recursive: true });
  symlinkSync(dev, join(root, 'sys/dev/block/7:5'));
  mkdirSync(join(root, 'sys/block/loop9/loop'), { recursive: true });
  writeFileSync(join(root, 'sys/block/loop9/loop/backing_file'), (o.loopBacking ?? '/srv/some.img') + '\n');
  mkdirSync(join(root, 'proc/self'), { recursive: true });
  writeFileSync(join(root, 'proc/self/mountinfo'), o.mountinfo ?? '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n');
  writeFileSync(join(root, 'proc/swaps'), 'Filename\tType\tSize\tUsed\tPriority\n' + (o.swaps ?? ''));
  return { proc: join(root, 'proc'), sys: join(root, 'sys') };
}

t.test('partitions are found through sysfs', async (t) => {
  const roots = fakeHost(t);
  const parts = deviceAndPartitions('7:5', roots);
  t.same(parts.map((p) => [p.devno, p.name]), [['7:5', 'loop5'], ['259:1', 'loop5p1']]);
});

t.test('an idle device has no usage reasons', async (t) => {
  t.same(usageReasons('/dev/loop5', '7:5', fakeHost(t)), []);
});

t.test('a mounted partition (by major:minor) makes the whole device in use', async (t) => {
  const roots = fakeHost(t, { mountinfo: '27 1 254:0 / / rw - ext4 /dev/vda rw\n42 27 259:1 / /mnt/my\\040data rw - ext4 /dev/loop5p1 rw\n' });
  const reasons = usageReasons('/dev/loop5', '7:5', roots);
  t.equal(reasons.length, 1);
  t.match(reasons[0], 'loop5p1 is mounted at /mnt/my data');
});

t.test('a mount naming the device as its source counts too (btrfs has anonymous devnos)', async (t) => {
  const roots = fakeHost(t, { mountinfo: '50 27 0:77 / /srv rw - btrfs /dev/loop5 rw\n' });
  t.match(usageReasons('/dev/loop5', '7:5', roots).join(), 'mounted at /srv');
});

t.test('holders (device-mapper, md) of the device or a partition', async (t) => {
  t.match(usageReasons('/dev/loop5', '7:5', fakeHost(t, { holders: ['dm-0'] })).join(), 'loop5 is held by dm-0');
  t.match(usageReasons('/dev/loop5', '7:5', fakeHost(t, { partHolders: ['md127'] })).join(), 'loop5p1 is held by md127');
});

t.test('swap on the device', async (t) => {
  t.match(usageReasons('/dev/loop5', '7:5', fakeHost(t, { swaps: '/dev/loop5p1  partition\t1024\t0\t-2\n' })).join(), 'in use as swap');
});

t.test('a loop device backed by the device', async (t) => {
  t.match(usageReasons('/dev/loop5', '7:5', fakeHost(t, { loopBacking: '/dev/loop5' })).join(), '/dev/loop5 backs /dev/loop9');
});

t.test('claim refuses what is not a block device', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-claim-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'file.img'), Buffer.alloc(4096));
  t.throws(() => claimBlockDevice(join(dir, 'file.img')), { code: 'KILN_BAD_REQUEST', message: /not a block device/ });
  t.throws(() => claimBlockDevice(join(dir, 'nope')), { code: 'KILN_NOT_FOUND' });
  t.throws(() => claimBlockDevice('dev/loop0'), { code: 'KILN_BAD_REQUEST', message: /absolute/ });
  t.throws(() => claimBlockDevice('/dev/null'), { code: 'KILN_BAD_REQUEST', message: /not a block device/ }, 'a character device');
});
