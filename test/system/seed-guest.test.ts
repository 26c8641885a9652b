// A real guest reads kiln's seed: the tiny BIOS guest (scripts/images/build-tiny-guest) boots
// under plain qemu-system-x86_64 with TCG, finds the seed ISO by label (cidata / config-2) on a
// cdrom, mounts it with the Linux iso9660 driver and prints what it read on the serial console.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSeed, type SeedSpec } from '../../agent/seed/index.js';
import { run } from '../../agent/tools/run.js';

// Two TCG boots under a shared, loaded host: give them room beyond tap's default.
t.setTimeout(15 * 60_000);

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOq4rRBIPGYNg1ZCrEH7V5DsZLqoh7fz0Mp1rT6dCN3d kiln@test';
const dir = mkdtempSync(join(tmpdir(), 'kiln-seed-guest-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const built = await run(join(ROOT, 'scripts/images/build-tiny-guest'), [], { timeoutMs: 20 * 60_000 });
const image = built.stdout.trim().split('\n').pop()!;

async function boot(name: string, iso: Buffer): Promise<string> {
  const seed = join(dir, `${name}.iso`);
  const serial = join(dir, `${name}.serial`);
  writeFileSync(seed, iso);
  // -no-reboot: the guest's poweroff ends qemu; snapshot=on keeps the cached image untouched.
  await run('qemu-system-x86_64', [
    '-accel', 'tcg', '-m', '256', '-smp', '1', '-display', 'none', '-monitor', 'none', '-no-reboot',
    '-drive', `file=${image},format=raw,if=virtio,snapshot=on`,
    '-drive', `file=${seed},format=raw,media=cdrom,readonly=on`,
    '-serial', `file:${serial}`,
  ], { timeoutMs: 8 * 60_000 });
  return existsSync(serial) ? readFileSync(serial, 'utf8').replace(/\r/g, '') : '';
}

function spec(extra: Partial<SeedSpec>): SeedSpec {
  return {
    format: 'nocloud', instanceId: 'iid-guest-1', hostname: 'tiny1', sshKeys: [KEY], createdAt: new Date('2026-02-03T04:05:06Z'),
    userData: Buffer.from('#cloud-config\n#kiln-say the guest read its seed\n'), ...extra,
  };
}

const nocloud = buildSeed(spec({}), { maxFileBytes: 1 << 20 });
const configdrive = buildSeed(spec({
  format: 'configdrive', instanceId: 'iid-guest-2', hostname: 'tiny2', uuid: '3f2a9c1e-5b7d-4e8f-a0b1-c2d3e4f5a6b7',
  userData: Buffer.from('#!/bin/sh\n#kiln-say config drive too\necho hi\n'),
}), { maxFileBytes: 1 << 20 });

t.test('host blkid reads the labels the guest looks for', async (t) => {
  for (const [name, iso, label] of [['nocloud', nocloud, 'cidata'], ['configdrive', configdrive, 'config-2']] as const) {
    const p = join(dir, `blkid-${name}.iso`);
    writeFileSync(p, iso);
    const { stdout } = await run('blkid', ['-p', '-o', 'export', p], { timeoutMs: 10_000 });
    t.match(stdout, new RegExp(`^LABEL=${label}$`, 'm'), `${name} label`);
    t.match(stdout, /^TYPE=iso9660$/m);
  }
});

t.test('the tiny guest boots and reads both seed formats', async (t) => {
  // Both boots at once: each TCG guest keeps one core busy.
  const [a, b] = await Promise.all([boot('nocloud', nocloud), boot('configdrive', configdrive)]);
  t.match(a, /kiln-seed source=\S+ format=nocloud/, 'nocloud found');
  t.match(a, /^kiln-seed instance-id=iid-guest-1$/m, 'nocloud instance-id');
  t.match(a, /^kiln-seed hostname=tiny1$/m, 'nocloud hostname');
  t.match(a, /^kiln-say: the guest read its seed$/m, 'nocloud user-data');
  t.match(b, /kiln-seed source=\S+ format=configdrive/, 'config drive found');
  t.match(b, /^kiln-seed instance-id=3f2a9c1e-5b7d-4e8f-a0b1-c2d3e4f5a6b7$/m, 'config-drive instance-id is the uuid');
  t.match(b, /^kiln-seed hostname=tiny2$/m, 'config-drive hostname');
  t.match(b, /^kiln-say: config drive too$/m, 'config-drive user_data');
  if (!a.includes('kiln-seed instance-id=') || !b.includes('kiln-seed instance-id=')) t.comment(`serial logs:\n${a}\n---\n${b}`);
});
