// End to end through kilnd on the real libvirtd (qemu:///system, TCG): the tiny guest is served
// over loopback HTTP, fetched, verified, cached, given a disk in each mode and a seed in each
// format, booted, and reads its seed; lifecycle events move it to shutoff when it powers off;
// rm leaves nothing behind.
import t from 'tap';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, readFileSync, statSync, mkdtempSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient, unixSocketConnector } from '../../agent/cli/client.js';
import type { InstanceJson } from '../../agent/api/protocol.js';
import { startKilnd, removeDir, type KilndHandle } from '../fixtures/kilnd.js';
import { imagePath } from './guests-qemu.js';

const image = imagePath('build-tiny-guest', ['--qcow2']);
const digest = createHash('sha256').update(readFileSync(image)).digest('hex');

function serve(path: string): Promise<{ server: Server; url: string }> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': statSync(path).size });
    createReadStream(path).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    const addr = server.address() as { port: number };
    resolve({ server, url: `http://127.0.0.1:${addr.port}/tiny.qcow2` });
  }));
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

const virshNames = () => execFileSync('virsh', ['-c', 'qemu:///system', 'list', '--all', '--name'], { encoding: 'utf8', timeout: 30_000 }).split('\n').map((s) => s.trim()).filter(Boolean);

let kilnd: KilndHandle;
let client: ApiClient;
let url: string;

t.before(async () => {
  removeOurDomains();
  const served = await serve(image);
  t.teardown(() => served.server.close());
  url = served.url;
  kilnd = await startKilnd({ args: ['--libvirt-uri', 'qemu:///system', '--default-network', 'user'] });
  client = new ApiClient(unixSocketConnector(kilnd.socket), kilnd.socket);
});

/** Domains of this test left on the host's libvirtd by an earlier, interrupted run are removed first. */
function removeOurDomains(): void {
  for (const name of virshNames().filter((n) => n.startsWith('e2e-tiny-'))) {
    try {
      execFileSync('virsh', ['-c', 'qemu:///system', 'destroy', name], { stdio: 'ignore', timeout: 30_000 });
    } catch { /* not running */ }
    try {
      execFileSync('virsh', ['-c', 'qemu:///system', 'undefine', name], { stdio: 'ignore', timeout: 30_000 });
    } catch { /* gone */ }
  }
}

t.teardown(async () => {
  removeOurDomains();
  await kilnd?.stop();
  if (kilnd) removeDir(kilnd.dir);
});

interface Case {
  name: string;
  seed: 'nocloud' | 'configdrive';
  mode: 'overlay' | 'flat' | 'volume';
}

const cases: Case[] = [
  { name: 'e2e-tiny-nocloud-overlay', seed: 'nocloud', mode: 'overlay' },
  { name: 'e2e-tiny-configdrive-flat', seed: 'configdrive', mode: 'flat' },
  { name: 'e2e-tiny-nocloud-volume', seed: 'nocloud', mode: 'volume' },
];

for (const c of cases) {
  t.test(`${c.seed} seed, ${c.mode} disk: the guest boots from its own disk and reads its seed`, async (t) => {
    let loop: string | undefined;
    if (c.mode === 'volume') {
      const dir = mkdtempSync(join(tmpdir(), 'kiln-e2e-vol-'));
      const backing = join(dir, 'volume.img');
      writeFileSync(backing, '');
      truncateSync(backing, 96 * 1024 * 1024);
      loop = execFileSync('losetup', ['--find', '--show', backing], { encoding: 'utf8' }).trim();
      t.teardown(() => {
        try {
          execFileSync('losetup', ['-d', loop!]);
        } catch { /* already detached */ }
        removeDir(dir);
      });
    }
    const marker = `marker-${c.name}-${Date.now()}`;
    const body = {
      name: c.name,
      image: url,
      checksum: `sha256:${digest}`,
      diskFormat: 'qcow2',
      memory: 256 * 1024 * 1024,
      vcpus: 1,
      seed: c.seed,
      userData: `#cloud-config\n#kiln-say ${marker}\n`,
      wait: 'running',
      ...(c.mode === 'volume' ? { bootVolume: loop } : { diskMode: c.mode, diskSize: 128 * 1024 * 1024 }),
    };
    const created = await client.request<InstanceJson>('POST', '/v1/instances', body);
    t.equal(created.name, c.name);
    t.equal(created.image.digest, `sha256:${digest}`);
    t.equal(created.seed.format, c.seed);
    t.equal(created.disk.mode, c.mode);
    if (c.mode === 'volume') t.equal(created.disk.device, loop);
    else t.ok(created.disk.path && existsSync(created.disk.path), 'disk file exists');
    t.ok(virshNames().includes(c.name), 'domain defined on the real libvirtd');

    const consoleText = await waitFor('the guest to power off after reading its seed', () => {
      const text = existsSync(created.console) ? readFileSync(created.console, 'utf8') : '';
      return text.includes('kiln-poweroff') ? text : undefined;
    }, 240_000);
    t.match(consoleText, new RegExp(`kiln-seed source=\\S+ format=${c.seed}`));
    t.match(consoleText, /kiln-seed instance-id=\S+/);
    t.match(consoleText, `kiln-seed hostname=${c.name}`);
    t.match(consoleText, `kiln-say: ${marker}`);

    // The guest powered itself off: libvirt's lifecycle event (or the poll fallback) moves the state.
    const shown = await waitFor('state shutoff', async () => {
      const s = await client.request<InstanceJson>('GET', `/v1/instances/${c.name}`);
      return s.state === 'shutoff' ? s : undefined;
    }, 60_000);
    t.equal(shown.state, 'shutoff');

    // The same spec again is idempotent; a different one conflicts.
    const again = await client.request<InstanceJson>('POST', '/v1/instances', body);
    t.equal(again.name, c.name);
    await t.rejects(client.request('POST', '/v1/instances', { ...body, vcpus: 2 }), { code: 'KILN_CONFLICT' });

    await client.request('DELETE', `/v1/instances/${c.name}`);
    t.notOk(virshNames().includes(c.name), 'domain undefined');
    t.notOk(existsSync(join(kilnd.stateDir, 'instances', c.name)), 'instance folder removed');
    await t.rejects(client.request('GET', `/v1/instances/${c.name}`), { code: 'KILN_NOT_FOUND' });
  });
}

t.test('the cached image was downloaded once and is no longer in use', async (t) => {
  const images = await client.request<Array<{ digest: string; inUseBy: string[] }>>('GET', '/v1/images');
  const mine = images.find((i) => i.digest === `sha256:${digest}`);
  t.ok(mine, 'image cached');
  t.same(mine?.inUseBy, []);
});
