// The real test cloud image (scripts/images/build-cloud-image: Debian bookworm + cloud-init)
// booted from its own disk with plain qemu-system-x86_64 under TCG, user-mode networking with
// the guest's sshd forwarded to a loopback port, and a cloud-localds seed carrying kiln's key.
// readiness' waitForCloudInit must reach `status: done`; then, over SSH: the root filesystem
// was grown to the disk size, user-data's runcmd ran, and the host key kiln accepted on first
// use is one cloud-init printed on the console.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../agent/log.js';
import { AgentKeys, hostKeysFromConsole, runOverSsh, waitForCloudInit, type SshTarget } from '../../agent/readiness/index.js';
import { freePort } from '../integration/readiness/sshd.js';
import { bootQemu, imagePath } from './guests-qemu.js';

// Building the image when it is not cached takes 5-15 min; booting under TCG about 2-4 min.
t.setTimeout(30 * 60_000);
const tmp = mkdtempSync(join(tmpdir(), 'kiln-guests-cloud-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

const DISK_BYTES = 4 * 1024 * 1024 * 1024;
const image = imagePath('build-cloud-image');
const keys = await AgentKeys.load(join(tmp, 'keys'));

t.test('cloud image: --wait ssh reaches cloud-init done, root grown, runcmd ran', async (t) => {
  const disk = join(tmp, 'disk.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', image, disk, String(DISK_BYTES)]);
  writeFileSync(join(tmp, 'meta-data'), 'instance-id: iid-kiln-cloud-1\nlocal-hostname: kiln-cloud\n');
  writeFileSync(
    join(tmp, 'user-data'),
    [
      '#cloud-config',
      'ssh_authorized_keys:',
      `  - ${keys.publicKey}`,
      'runcmd:',
      "  - [sh, -c, 'echo kiln-runcmd-$(hostname) > /var/tmp/kiln-runcmd; echo KILN-RUNCMD-DONE > /dev/ttyS0']",
      '',
    ].join('\n'),
  );
  execFileSync('cloud-localds', [join(tmp, 'seed.iso'), join(tmp, 'user-data'), join(tmp, 'meta-data')]);
  const port = await freePort();
  const started = Date.now();
  const g = bootQemu({ dir: tmp, disk: { path: disk, format: 'qcow2' }, seed: { path: join(tmp, 'seed.iso'), as: 'sata-cdrom' }, memoryMiB: 1024, cpus: 2, sshPort: port });
  t.teardown(() => g.kill());

  const target: SshTarget = { host: '127.0.0.1', port, username: 'debian', privateKey: keys.privateKey };
  const log = createLogger({ level: process.env.KILN_TEST_LOG ?? 'warn' });
  const consoleTail = async () => (await readFile(g.consolePath, 'utf8').catch(() => '')).slice(-4000);
  const ready = await waitForCloudInit(target, { timeoutMs: 8 * 60_000, log, consoleTail });
  const readyMs = Date.now() - started;
  t.comment(`cloud-init done over ssh after ${readyMs} ms`);
  t.equal(ready.status, 'done');
  t.match(ready.detail, /DataSourceNoCloud/, 'the NoCloud seed was the datasource');

  const consoleKeys = hostKeysFromConsole(g.console());
  t.ok(consoleKeys.length >= 1, `cloud-init printed ${consoleKeys.length} host keys on the console`);
  t.ok(consoleKeys.includes(ready.hostKey), 'the key accepted on first use is one the console showed');
  const pinned = { ...target, knownHostKey: consoleKeys.join('\n') };

  const runcmd = await runOverSsh(pinned, 'cat /var/tmp/kiln-runcmd', 60_000);
  t.same(runcmd, { code: 0, stdout: 'kiln-runcmd-kiln-cloud\n', stderr: '' }, "user-data's runcmd ran");
  t.match(g.console(), /KILN-RUNCMD-DONE/, 'and wrote to the serial console');

  const df = await runOverSsh(pinned, 'df -B1 --output=size / | tail -n 1; lsblk -bndo SIZE /dev/vda', 60_000);
  t.equal(df.code, 0, df.stderr);
  const [rootBytes, diskBytes] = df.stdout.trim().split(/\s+/).map(Number) as [number, number];
  t.equal(diskBytes, DISK_BYTES, 'the guest sees the disk size asked for');
  t.ok(rootBytes > DISK_BYTES * 0.9, `root filesystem grown to ${rootBytes} bytes (image: 2 GiB)`);

  const who = await runOverSsh(pinned, 'hostname; id -un; sudo -n true && echo sudo-ok', 60_000);
  t.equal(who.stdout, 'kiln-cloud\ndebian\nsudo-ok\n', 'hostname from meta-data, default user with sudo');

  const status = await runOverSsh(pinned, 'cloud-init status --long', 60_000);
  t.match(status.stdout, /status: done/);

  await g.powerdown();
  const code = await Promise.race([g.exited, new Promise<string>((r) => setTimeout(() => r('still running'), 120_000))]);
  t.equal(code, 0, 'the guest powers off on the ACPI button');
});
