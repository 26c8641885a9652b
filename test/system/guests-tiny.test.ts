// The tiny test guest (scripts/images/build-tiny-guest) booted from its own disk with plain
// qemu-system-x86_64 under TCG: it reads a NoCloud seed made by cloud-localds from a SATA cdrom
// and powers off; it reads a config-2 seed from a virtio disk, stays up when asked, and powers
// off cleanly on the ACPI power button. What it prints is the contract the instance tests use.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bootQemu, imagePath } from './guests-qemu.js';

t.setTimeout(10 * 60_000);
const tmp = mkdtempSync(join(tmpdir(), 'kiln-guests-tiny-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

const raw = imagePath('build-tiny-guest');
const qcow2 = imagePath('build-tiny-guest', ['--qcow2']);

function overlay(name: string, base: string, baseFormat: 'raw' | 'qcow2'): string {
  const path = join(tmp, `${name}.qcow2`);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', baseFormat, '-b', base, path, '256M']);
  return path;
}

t.test('the image is a small MBR disk with one active partition', async (t) => {
  const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', '-f', 'raw', raw], { encoding: 'utf8' })) as { 'virtual-size': number };
  t.equal(info['virtual-size'], 64 * 1024 * 1024);
  const table = JSON.parse(execFileSync('sfdisk', ['--json', raw], { encoding: 'utf8' })) as { partitiontable: { label: string; partitions: Array<{ bootable?: boolean; type: string }> } };
  t.equal(table.partitiontable.label, 'dos');
  t.equal(table.partitiontable.partitions.length, 1);
  t.equal(table.partitiontable.partitions[0]!.bootable, true);
  const q = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', '-f', 'qcow2', qcow2], { encoding: 'utf8' })) as { 'virtual-size': number; 'actual-size': number };
  t.equal(q['virtual-size'], 64 * 1024 * 1024, 'the qcow2 copy has the same disk');
  t.ok(q['actual-size'] < 32 * 1024 * 1024, `qcow2 is ${q['actual-size']} bytes`);
});

t.test('NoCloud seed (cloud-localds) on a SATA cdrom: prints instance-id and user-data, powers off', async (t) => {
  const dir = join(tmp, 'nocloud');
  mkdirSync(dir);
  writeFileSync(join(dir, 'meta-data'), 'instance-id: iid-kiln-tiny-1\nlocal-hostname: tiny-one\n');
  writeFileSync(join(dir, 'user-data'), '#cloud-config\n# a comment\n#kiln-say hello from NoCloud\n#kiln-say second line is ignored\n');
  execFileSync('cloud-localds', [join(dir, 'seed.iso'), join(dir, 'user-data'), join(dir, 'meta-data')]);
  const started = Date.now();
  const g = bootQemu({ dir, disk: { path: overlay('nocloud', raw, 'raw'), format: 'qcow2' }, seed: { path: join(dir, 'seed.iso'), as: 'sata-cdrom' } });
  t.teardown(() => g.kill());
  const text = await g.waitForConsole(/kiln-poweroff/, 180_000);
  const code = await Promise.race([g.exited, new Promise<string>((r) => setTimeout(() => r('still running'), 60_000))]);
  t.equal(code, 0, 'qemu exits: the guest powered off');
  t.match(text, /SYSLINUX/, 'booted through its own bootloader');
  t.match(text, /kiln-tiny: init/);
  t.match(text, /kiln-seed source=\/dev\/sr\d format=nocloud/);
  t.match(text, /^kiln-seed instance-id=iid-kiln-tiny-1\r?$/m);
  t.match(text, /^kiln-seed hostname=tiny-one\r?$/m);
  t.match(text, /^kiln-say: hello from NoCloud\r?$/m);
  t.notMatch(text, /second line/);
  t.notMatch(text, /kiln-ready/);
  t.comment(`NoCloud boot to power-off: ${Date.now() - started} ms`);
});

t.test('config-2 seed on a virtio disk: reads uuid, stays up, powers off on the ACPI button', async (t) => {
  const dir = join(tmp, 'configdrive');
  const latest = join(dir, 'cd', 'openstack', 'latest');
  mkdirSync(latest, { recursive: true });
  const uuid = '3b0c8f5e-9d1a-4c57-8e2f-0a6b5d7c9e11';
  writeFileSync(join(latest, 'meta_data.json'), JSON.stringify({ uuid, hostname: 'tiny-two', name: 'tiny-two', public_keys: {} }));
  writeFileSync(join(latest, 'user_data'), '#!/bin/sh\r\n#kiln-say hello from config-2\r\n#kiln-stay\r\n');
  execFileSync('xorriso', ['-as', 'mkisofs', '-quiet', '-V', 'config-2', '-J', '-r', '-o', join(dir, 'seed.iso'), join(dir, 'cd')], { stdio: 'ignore' });
  const g = bootQemu({ dir, disk: { path: overlay('configdrive', qcow2, 'qcow2'), format: 'qcow2' }, seed: { path: join(dir, 'seed.iso'), as: 'virtio-disk' } });
  t.teardown(() => g.kill());
  const text = await g.waitForConsole(/kiln-ready/, 180_000);
  t.match(text, /kiln-seed source=\/dev\/vd[b-z] format=configdrive/);
  t.match(text, new RegExp(`^kiln-seed instance-id=${uuid}\\r?$`, 'm'));
  t.match(text, /^kiln-seed hostname=tiny-two\r?$/m);
  t.match(text, /^kiln-say: hello from config-2\r?$/m, 'CRLF user-data is read');
  // It stays up until told otherwise.
  const early = await Promise.race([g.exited.then(() => 'exited'), new Promise<string>((r) => setTimeout(() => r('running'), 3000))]);
  t.equal(early, 'running', 'still running after kiln-ready');
  await g.powerdown();
  await g.waitForConsole(/kiln-poweroff/, 60_000);
  t.equal(await g.exited, 0, 'powered off by the ACPI button');
});

t.test('no seed at all: says so and powers off', async (t) => {
  const dir = join(tmp, 'noseed');
  mkdirSync(dir);
  const g = bootQemu({ dir, disk: { path: overlay('noseed', raw, 'raw'), format: 'qcow2' } });
  t.teardown(() => g.kill());
  const text = await g.waitForConsole(/kiln-poweroff/, 240_000);
  t.match(text, /^kiln-seed none\r?$/m);
  t.notMatch(text, /kiln-seed instance-id/);
  t.equal(await g.exited, 0, 'powered off');
});
