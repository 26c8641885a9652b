// End to end through kilnd on the real libvirtd with the real cloud image (Debian + cloud-init):
// `kiln instance create NAME --image URL --checksum ... --ssh-key KEY.pub --wait ssh` with no
// network flag and no user flag reaches a ready guest (cloud-init status: done), its root
// filesystem grown to the disk size asked for, and user-data's runcmd result readable over SSH
// with the operator's own key on the endpoint `kiln instance show` reports.
import t from 'tap';
import { createHash } from 'node:crypto';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createReadStream, readFileSync, statSync, mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KILN, startKilnd, removeDir, type KilndHandle } from '../fixtures/kilnd.js';
import { runOverSsh } from '../../agent/readiness/index.js';
import { imagePath } from './guests-qemu.js';
import type { InstanceJson } from '../../agent/api/protocol.js';

t.setTimeout(30 * 60_000);
const image = imagePath('build-cloud-image');
const digest = createHash('sha256').update(readFileSync(image)).digest('hex');
const DISK = 4 * 1024 ** 3;
// The image server lives in this process: the CLI must run without blocking the event loop.
const kiln = async (args: string[], timeout: number) => (await promisify(execFile)(process.execPath, [KILN, ...args], { encoding: 'utf8', timeout })).stdout;

function serve(path: string): Promise<{ server: Server; url: string }> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': statSync(path).size });
    createReadStream(path).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    resolve({ server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}/cloud.qcow2` });
  }));
}

let kilnd: KilndHandle;

/** The domain of this test, left on the host's libvirtd by an earlier interrupted run, is removed first. */
function removeOurDomain(): void {
  try {
    execFileSync('virsh', ['-c', 'qemu:///system', 'destroy', 'e2e-cloud'], { stdio: 'ignore', timeout: 30_000 });
  } catch { /* not running */ }
  try {
    execFileSync('virsh', ['-c', 'qemu:///system', 'undefine', 'e2e-cloud'], { stdio: 'ignore', timeout: 30_000 });
  } catch { /* gone */ }
}

removeOurDomain();
t.teardown(async () => {
  removeOurDomain();
  await kilnd?.stop();
  if (kilnd) removeDir(kilnd.dir);
});

t.test('cloud image: --wait ssh reaches cloud-init done; root grown; runcmd read over SSH', async (t) => {
  const { server, url } = await serve(image);
  t.teardown(() => server.close());
  // kilnd's default configuration apart from where it keeps state: no network flag below.
  kilnd = await startKilnd({ args: ['--libvirt-uri', 'qemu:///system', '--ready-timeout', '15m'] });
  const dir = mkdtempSync(join(tmpdir(), 'kiln-e2e-cloud-'));
  t.teardown(() => removeDir(dir));
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'operator')]);
  const marker = `kiln-e2e-${Date.now()}`;
  writeFileSync(join(dir, 'user-data'), `#cloud-config\nruncmd:\n  - [sh, -c, "echo ${marker} > /var/tmp/kiln-proof"]\n`);

  const started = Date.now();
  const out = await kiln([
    '--socket', kilnd.socket, '--json', 'instance', 'create', 'e2e-cloud',
    '--image', url, '--checksum', `sha256:${digest}`, '--disk-size', '4G', '--memory', '1G', '--vcpus', '2',
    '--user-data', join(dir, 'user-data'), '--ssh-key', join(dir, 'operator.pub'), '--wait', 'ssh',
  ], 20 * 60_000);
  t.comment(`ready after ${Math.round((Date.now() - started) / 1000)} s`);
  const inst = JSON.parse(out) as InstanceJson;
  t.equal(inst.state, 'running');
  t.equal(inst.ready, true);
  t.ok(inst.ssh && inst.ssh.port > 0, 'an SSH endpoint is reported');
  t.ok(existsSync(inst.console), 'console log path exists');

  const shown = JSON.parse(await kiln(['--socket', kilnd.socket, '--json', 'instance', 'show', 'e2e-cloud'], 60_000)) as InstanceJson;
  t.same(shown.ssh, inst.ssh);
  t.equal(shown.console, inst.console);

  const target = { host: inst.ssh!.host, port: inst.ssh!.port, username: 'debian', privateKey: readFileSync(join(dir, 'operator')) };
  const proof = await runOverSsh(target, 'cat /var/tmp/kiln-proof; cloud-init status; df -B1 --output=size / | tail -n 1', 60_000);
  const [line1, line2, size] = proof.stdout.trim().split('\n');
  t.equal(line1, marker, 'runcmd wrote the marker');
  t.match(line2, /status: done/);
  const rootBytes = Number(size);
  t.ok(rootBytes > 3.5 * 1024 ** 3 && rootBytes <= DISK, `root filesystem grown to ${rootBytes} bytes of a ${DISK}-byte disk`);

  await kiln(['--socket', kilnd.socket, 'instance', 'rm', 'e2e-cloud'], 120_000);
  t.notOk(existsSync(join(kilnd.stateDir, 'instances', 'e2e-cloud')), 'instance folder removed');
});
