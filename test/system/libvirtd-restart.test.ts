// libvirtd restart during operation: kilnd on qemu:///system (the real libvirtd, brought up by
// scripts/host/libvirtd-up as `libvirtd -d` where no systemd runs) provisions an instance from a
// small qcow2 (a SeaBIOS guest with nothing to boot: it just runs). The test then kills libvirtd
// and starts it again: kilnd keeps serving while it is gone, reconnects by itself, and its view
// of the instance stays right (running, the same qemu process); lifecycle calls work on the new
// connection. The restart is kept short: other users of the host's libvirtd see a blip only.
// A second case kills kilnd itself mid-provisioning (domain defined, not yet started): on a real
// libvirtd the domain outlives kilnd, and the restart's reconcile must remove it.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { ROOT } from '../fixtures/kilnd.js';
import { call, consistencyProblems, killHard, qcow2Bytes, sha256, sleep, startFaultServer, startKilnd, tempDir } from '../integration/reliability/helpers.js';

const URI = 'qemu:///system';
const NAME = `rel-lvd-${process.pid}`;
const MiB = 1024 * 1024;

const virsh = (...args: string[]) => spawnSync('virsh', ['-c', URI, ...args], { encoding: 'utf8', timeout: 30_000 });
// The host's daemon runs as root; a private one of another test (domains/reconnect) runs as nobody.
const libvirtdPid = () => {
  const r = spawnSync('pgrep', ['-x', '-u', 'root', 'libvirtd'], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.trim().split('\n')[0]) : undefined;
};
const qemuPid = (name: string) => {
  const r = spawnSync('pgrep', ['-f', `guest=${name},`], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.trim().split('\n')[0]) : undefined;
};
async function until(what: string, ms: number, probe: () => boolean | Promise<boolean>) {
  const end = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

// A libvirtd must be there to restart; this brings it up where nothing manages it (idempotent).
execFileSync(join(ROOT, 'scripts/host/libvirtd-up'), { stdio: 'inherit' });
t.teardown(async () => {
  if (!libvirtdPid()) spawnSync('libvirtd', ['-d']);
  await until('libvirtd', 20_000, () => virsh('version').status === 0).catch(() => undefined);
  virsh('destroy', NAME);
  virsh('undefine', NAME, '--nvram');
});

t.test('libvirtd is killed and started again: kilnd reconnects and keeps its instance state right', async (t) => {
  const server = await startFaultServer();
  t.teardown(() => server.close());
  const work = tempDir(t, 'kiln-rel-lvd-');
  const image = qcow2Bytes(work, 'tiny.qcow2', '64M');
  const url = server.add('/tiny.qcow2', { data: image });
  const kilnd = await startKilnd(t, { args: ['--libvirt-uri', URI, '--shutdown-grace', '2s'] });
  const api = (method: string, path: string, body?: unknown) => call(kilnd.socket, method, path, body);

  const created = await api('POST', '/v1/instances', { name: NAME, image: url, checksum: `sha256:${sha256(image)}`, memory: 128 * MiB });
  t.equal(created.status, 201, created.text.slice(0, 400));
  t.equal(created.json.state, 'running');
  t.match(virsh('domstate', NAME).stdout, /running/, 'libvirt runs it');
  const qemuBefore = qemuPid(NAME);
  t.ok(qemuBefore, `qemu process ${qemuBefore}`);

  // Kill libvirtd (as a crash or an upgrade would) and keep it down for a moment.
  const pid = libvirtdPid()!;
  t.ok(pid, `libvirtd pid ${pid}`);
  const downAt = Date.now();
  process.kill(pid, 'SIGKILL');
  await until('libvirtd to be gone', 10_000, () => libvirtdPid() === undefined);
  const whileDown = await api('GET', '/v1/status');
  t.equal(whileDown.status, 200, 'kilnd serves while libvirtd is gone');
  t.equal(whileDown.json.libvirt.connected, false, 'and says libvirt is not connected');
  const showDown = await api('GET', `/v1/instances/${NAME}`);
  t.equal(showDown.status, 200, 'the instance can still be shown (from its record)');
  t.equal(showDown.json.name, NAME);

  execFileSync('libvirtd', ['-d']);
  await until('libvirtd to answer', 30_000, () => virsh('version').status === 0);
  const downMs = Date.now() - downAt;
  t.comment(`libvirtd was down for ${downMs} ms`);

  // The next calls reconnect on their own; no restart of kilnd.
  await until('kilnd to reconnect', 30_000, async () => (await api('GET', '/v1/status')).json?.libvirt?.connected === true);
  const show = await api('GET', `/v1/instances/${NAME}`);
  t.equal(show.status, 200);
  t.equal(show.json.state, 'running', 'the instance is still running, as libvirt says');
  t.match(virsh('domstate', NAME).stdout, /running/);
  t.equal(qemuPid(NAME), qemuBefore, 'the same qemu process: the guest survived the restart');
  const list = await api('GET', '/v1/instances');
  t.same(list.json.map((i: { name: string; state: string }) => `${i.name}:${i.state}`), [`${NAME}:running`]);
  t.match(kilnd.log(), /libvirt connection lost; reconnecting|libvirt closed the connection/, 'kilnd noticed and reconnected');

  // Lifecycle through the new connection.
  const stopped = await api('POST', `/v1/instances/${NAME}/stop`, { force: true });
  t.equal(stopped.json?.state, 'shutoff', stopped.text.slice(0, 300));
  t.match(virsh('domstate', NAME).stdout, /shut off/);
  const started = await api('POST', `/v1/instances/${NAME}/start`);
  t.equal(started.json?.state, 'running', started.text.slice(0, 300));
  const removed = await api('DELETE', `/v1/instances/${NAME}`);
  t.equal(removed.status, 200, removed.text.slice(0, 300));
  t.not(virsh('domstate', NAME).status, 0, 'the domain is gone from libvirt');
});

t.test('kilnd killed mid-provisioning on qemu:///system: the restart removes the half-made domain', async (t) => {
  // On test:///default a kill takes the domains with it; a real libvirtd keeps them, so this is
  // where "no orphan domain after a crash" is shown.
  const name = `${NAME}-x`;
  t.teardown(() => {
    virsh('destroy', name);
    virsh('undefine', name, '--nvram');
  });
  const server = await startFaultServer();
  t.teardown(() => server.close());
  const work = tempDir(t, 'kiln-rel-lvdx-');
  const image = qcow2Bytes(work, 'tiny.qcow2', '64M');
  const url = server.add('/tiny.qcow2', { data: image });
  const dir = tempDir(t, 'kiln-rel-lvdxd-');
  let kilnd = await startKilnd(t, { dir, args: ['--libvirt-uri', URI] });
  const body = Buffer.from(JSON.stringify({ name, image: url, checksum: `sha256:${sha256(image)}`, memory: 128 * MiB }));
  // Killed the moment the start step begins: the domain is defined, the record says provisioning.
  const cut = await new Promise<string>((resolve) => {
    const req = request({ socketPath: kilnd.socket, method: 'POST', path: '/v1/instances', headers: { accept: 'application/x-ndjson', 'content-type': 'application/json', 'content-length': String(body.length) } }, (res) => {
      res.on('data', (c: Buffer) => {
        if (c.toString().includes('"step":"start"')) void killHard(kilnd).then(() => resolve('killed at start'));
      });
      res.on('end', () => resolve('answered'));
      res.on('error', () => undefined);
    });
    req.on('error', () => undefined);
    req.end(body);
  });
  t.equal(cut, 'killed at start');
  t.equal(virsh('domstate', name).status, 0, 'the domain kilnd defined outlives it in libvirtd');

  kilnd = await startKilnd(t, { dir, args: ['--libvirt-uri', URI] });
  t.not(virsh('domstate', name).status, 0, 'reconcile removed the half-made domain');
  t.same((await call(kilnd.socket, 'GET', '/v1/instances')).json, [], 'and the instance');
  t.same(await consistencyProblems(kilnd), [], 'consistent');
  const retry = await call(kilnd.socket, 'POST', '/v1/instances', { name, image: url, checksum: `sha256:${sha256(image)}`, memory: 128 * MiB });
  t.equal(retry.status, 201, retry.text.slice(0, 300));
  t.match(virsh('domstate', name).stdout, /running/, 'the retry made it');
  t.equal((await call(kilnd.socket, 'DELETE', `/v1/instances/${name}`)).status, 200);
  t.not(virsh('domstate', name).status, 0, 'removed');
});
