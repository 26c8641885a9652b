import t from 'tap';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { KilnError } from '../../../agent/errors.js';
import type { ProvisionRequest } from '../../../agent/instances/spec.js';
import { readRecord, writeRecord } from '../../../agent/instances/record.js';
import { rig, type Rig } from './fake-deps.js';

const USER_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUSERUSERUSER user@laptop';
const req = (name: string, extra: Partial<ProvisionRequest> = {}): ProvisionRequest => ({
  name, image: 'http://images.test/debian.qcow2', checksum: 'sha256:' + 'a'.repeat(64), sshKey: USER_KEY, userData: '#cloud-config\n', ...extra,
});

/** Nothing of `name` is left: folder, domain, image reference, disk file. */
function assertGone(t: Tap.Test, r: Rig, name: string) {
  t.notOk(existsSync(join(r.dir, name)), `${name}: no instance folder`);
  t.notOk(r.hv.domains.has(name), `${name}: no domain`);
  t.notOk(r.images.holders().includes(name), `${name}: no image reference`);
  t.same([...r.disks.live].filter((p) => p.includes(`/${name}/`) && existsSync(p)), [], `${name}: no disk file`);
  t.same(readdirSync(r.dir).filter((e) => e.startsWith('.')), [], 'no temporary leftovers');
}
declare namespace Tap { type Test = import('tap').Test }

t.test('provision runs every step and records the instance', async (t) => {
  const r = rig(t);
  const events: string[] = [];
  const res = await r.service.provision(req('web-1'), (e) => events.push(`${e.step}:${e.message}`));
  t.equal(res.created, true);
  const inst = res.instance;
  t.equal(inst.name, 'web-1');
  t.equal(inst.state, 'running');
  t.equal(inst.ready, true);
  t.match(inst.image.digest, /^sha256:[0-9a-f]{64}$/);
  t.same(inst.disk.mode, 'overlay');
  t.equal(inst.disk.path, join(r.dir, 'web-1', 'disk.qcow2'));
  t.equal(inst.seed.path, join(r.dir, 'web-1', 'seed.iso'));
  t.equal(inst.console, join(r.dir, 'web-1', 'console.log'));
  t.equal(inst.memory, 256 * 1024 * 1024);
  t.equal(inst.vcpus, 1);
  t.same(inst.ssh, { host: '127.0.0.1', port: 40200 });
  t.same(events.filter((e) => e.endsWith(':done')), ['image:done', 'disk:done', 'seed:done', 'define:done', 'start:done', 'wait:done']);
  t.same(r.images.holders(), ['web-1'], 'image reference taken');
  t.same(r.seed.last?.sshKeys, [USER_KEY, 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKILNKILNKILN kiln-agent'], "user's key and kiln's key in the seed");
  t.equal(r.seed.last?.hostname, 'web-1');
  t.equal(r.seed.last?.userData?.toString(), '#cloud-config\n');
  const dom = r.hv.domains.get('web-1')!;
  t.same(dom.spec.metadata, { instance: 'web-1', imageDigest: inst.image.digest, kilnVersion: '0.0.0-test' });
  t.same(dom.spec.network, { kind: 'user', sshHostPort: 40200 });
  t.equal(statSync(join(r.dir, 'web-1')).mode & 0o777, 0o700, 'instance folder 0700');
  t.equal(statSync(join(r.dir, 'web-1', 'record.json')).mode & 0o777, 0o600, 'record 0600');
  const rec = await readRecord(r.dir, 'web-1');
  t.equal(rec?.phase, 'ready');
  t.ok(rec?.steps.disk !== undefined && rec.steps.wait !== undefined, 'step durations recorded');
  t.notMatch(readFileSync(join(r.dir, 'web-1', 'record.json'), 'utf8'), /cloud-config/, 'user data is stored only as a hash');
  t.match(r.metrics.render(), /kiln_provision_step_seconds_count\{step="disk"\} 1/);
  t.match(r.metrics.render(), /kiln_instances\{state="running"\} 1/);
});

t.test('the same spec again returns the existing instance; a different one conflicts', async (t) => {
  const r = rig(t);
  const first = await r.service.provision(req('db'));
  const again = await r.service.provision(req('db'));
  t.equal(again.created, false);
  t.equal(again.instance.uuid, first.instance.uuid);
  t.equal(r.hv.domains.size, 1);
  // Defaults resolved: naming the default memory explicitly is the same spec.
  const explicit = await r.service.provision(req('db', { memory: 256 * 1024 * 1024, vcpus: 1, network: 'user' }));
  t.equal(explicit.created, false);
  const err = await r.service.provision(req('db', { vcpus: 2 })).catch((e: KilnError) => e);
  t.equal((err as KilnError).code, 'KILN_CONFLICT');
  t.same((err as KilnError).details.fields, ['vcpus']);
  t.equal(r.hv.domains.get('db')!.spec.vcpus, 1, 'the existing instance is untouched');
});

t.test('concurrent creates of one name make one instance', async (t) => {
  const r = rig(t);
  r.disks.delayMs = 20;
  const results = await Promise.all(Array.from({ length: 6 }, () => r.service.provision(req('same'))));
  t.equal(results.filter((x) => x.created).length, 1, 'exactly one call created it');
  t.equal(new Set(results.map((x) => x.instance.uuid)).size, 1, 'everyone got the same instance');
  t.equal(r.images.ensures, 1, 'the image was ensured once');
  t.equal(r.hv.domains.size, 1);
});

t.test('disk-heavy steps are bounded by diskConcurrency', async (t) => {
  const r = rig(t, { diskConcurrency: 2 });
  // Long enough that the five provisionings' disk steps overlap even on a loaded machine.
  r.disks.delayMs = 250;
  const results = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((n) => r.service.provision(req(n))));
  t.equal(results.length, 5);
  t.ok(r.service.diskPeak <= 2, `never more than 2 disks at once (peak ${r.service.diskPeak})`);
  t.equal(r.service.diskPeak, 2, 'the bound is used');
  const ports = results.map((x) => x.instance.ssh!.port);
  t.equal(new Set(ports).size, 5, 'each user-mode instance got its own SSH port');
});

const FAILURES: Array<[string, (r: Rig) => void, string]> = [
  ['image fetch', (r) => r.images.failOnce('ensure', new KilnError('KILN_FETCH_FAILED', 'down')), 'KILN_FETCH_FAILED'],
  ['image reference', (r) => r.images.failOnce('acquire', new KilnError('KILN_IMAGE_UNSAFE', 'bad base')), 'KILN_IMAGE_UNSAFE'],
  ['disk', (r) => r.disks.failOnce('create', new KilnError('KILN_QEMU_IMG', 'qemu-img failed')), 'KILN_QEMU_IMG'],
  ['seed build', (r) => r.seed.failOnce('build', new KilnError('KILN_TOO_LARGE', 'user data too big')), 'KILN_TOO_LARGE'],
  ['seed write', (r) => r.seed.failOnce('write', new KilnError('KILN_NO_SPACE', 'full')), 'KILN_NO_SPACE'],
  ['define', (r) => r.hv.failOnce('define', new KilnError('KILN_LIBVIRT', 'bad xml')), 'KILN_LIBVIRT'],
  ['start', (r) => r.hv.failOnce('start', new KilnError('KILN_LIBVIRT', 'cannot start')), 'KILN_LIBVIRT'],
  ['guest crash while starting', (r) => (r.hv.startState = 'crashed'), 'KILN_LIBVIRT'],
  ['memory below min_ram', (r) => (r.images.minRam = 1 << 30), 'KILN_MEMORY_TOO_SMALL'],
];

for (const [what, inject, code] of FAILURES) {
  t.test(`a failure at ${what} rolls back everything this call created`, async (t) => {
    const r = rig(t);
    await r.service.provision(req('keep')); // an unrelated instance must survive the rollback
    inject(r);
    const err = await r.service.provision(req('victim')).catch((e: KilnError) => e);
    t.equal((err as KilnError).code, code);
    assertGone(t, r, 'victim');
    t.ok(r.hv.domains.has('keep') && r.images.holders().includes('keep'), 'the other instance is intact');
    r.hv.startState = 'running';
    r.images.minRam = 0;
    const retry = await r.service.provision(req('victim', { memory: 1 << 30 }));
    t.equal(retry.created, true, 'the name is usable again');
  });
}

t.test('a rollback that cannot finish keeps the original error and is completed later', async (t) => {
  const r = rig(t);
  r.hv.failOnce('start', new KilnError('KILN_LIBVIRT', 'cannot start'));
  r.hv.failOnce('destroy', new KilnError('KILN_LIBVIRT', 'connection lost'));
  const err = await r.service.provision(req('sticky')).catch((e: KilnError) => e);
  t.equal((err as KilnError).code, 'KILN_LIBVIRT');
  t.equal((err as KilnError).message, 'cannot start', 'the caller sees the original failure');
  t.equal((await readRecord(r.dir, 'sticky'))?.phase, 'provisioning', 'the record stays for a later clean-up');
  const again = await r.service.provision(req('sticky'));
  t.equal(again.created, true, 'the next provisioning cleans up and succeeds');
  t.equal(r.hv.domains.size, 1);
  t.same(r.images.holders(), ['sticky']);
});

t.test('a failing ssh wait rolls back; a working one targets the forwarded port with kiln\'s key', async (t) => {
  const r = rig(t);
  const ok = await r.service.provision(req('ssh-ok', { wait: 'ssh', sshUser: 'admin' }));
  t.same(r.waits, [{ host: '127.0.0.1', port: 40200, username: 'admin' }]);
  t.equal(ok.instance.sshHostKey, 'ssh-ed25519 AAAA', 'the host key seen is recorded');
  t.equal(ok.instance.sshUser, 'admin');
  const redirected = await r.service.provision(req('ssh-root', { wait: 'ssh' }));
  t.equal(redirected.instance.sshUser, 'debian', 'the user readiness ended up with is recorded');
  t.equal((await r.service.show('ssh-root')).sshUser, 'debian', 'and kept in the record');
  r.deps.waitForCloudInit = async () => {
    throw new KilnError('KILN_TIMEOUT', 'cloud-init did not finish', { consoleTail: '...' });
  };
  const err = await r.service.provision(req('ssh-bad', { wait: 'ssh' })).catch((e: KilnError) => e);
  t.equal((err as KilnError).code, 'KILN_TIMEOUT');
  assertGone(t, r, 'ssh-bad');
});

t.test('a define refused because a foreign domain has the name never touches that domain', async (t) => {
  const r = rig(t);
  r.hv.domains.set('taken', { spec: { name: 'taken', uuid: 'other', metadata: { instance: 'someone-else', imageDigest: '', kilnVersion: '' } } as never, state: 'running' });
  const err = await r.service.provision(req('taken')).catch((e: KilnError) => e);
  t.equal((err as KilnError).code, 'KILN_LIBVIRT');
  t.equal(r.hv.domains.get('taken')?.state, 'running', 'the foreign domain still runs');
  t.notOk(existsSync(join(r.dir, 'taken')));
});

t.test('rm destroys, undefines, deletes disk and seed and releases the image', async (t) => {
  const r = rig(t);
  const { instance } = await r.service.provision(req('gone'));
  t.ok(existsSync(instance.disk.path!) && existsSync(instance.seed.path));
  await r.service.remove('gone');
  assertGone(t, r, 'gone');
  t.notOk(existsSync(instance.seed.path));
  const err = await r.service.remove('gone').catch((e: KilnError) => e);
  t.equal((err as KilnError).code, 'KILN_NOT_FOUND');
  t.equal(((await r.service.show('nope').catch((e: KilnError) => e)) as KilnError).code, 'KILN_NOT_FOUND');
  t.equal(((await r.service.show('Bad_Name').catch((e: KilnError) => e)) as KilnError).code, 'KILN_BAD_REQUEST');
});

t.test('start and stop', async (t) => {
  const r = rig(t);
  await r.service.provision(req('vm'));
  t.equal((await r.service.stop('vm')).state, 'shutoff');
  t.equal((await r.service.stop('vm')).state, 'shutoff', 'stop is idempotent');
  t.equal((await r.service.start('vm')).state, 'running');
  t.equal((await r.service.start('vm')).state, 'running', 'start is idempotent');
  t.equal((await r.service.stop('vm', { force: true })).state, 'shutoff');
  t.same((await r.service.list()).map((i) => [i.name, i.state]), [['vm', 'shutoff']]);
  t.same(await r.service.count(), { count: 1 });
});

t.test('reconcile rolls back interrupted work, redefines lost domains, releases stray references', async (t) => {
  const r = rig(t);
  await r.service.provision(req('survivor'));
  await r.service.provision(req('lost-domain'));
  await r.service.provision(req('half'));
  // 'half' looks like a crash mid-provisioning: its record still says provisioning.
  const half = (await readRecord(r.dir, 'half'))!;
  await writeRecord(r.dir, { ...half, phase: 'provisioning', ready: false });
  // libvirt forgot 'lost-domain' (a test driver restart).
  r.hv.domains.delete('lost-domain');
  // A stray reference held by an instance that has no record; and one held by a disk-area holder.
  const digest = [...r.images.images.keys()][0]!;
  await r.images.acquire(digest, 'ghost');
  await r.images.acquire(digest, 'disk:/var/tmp/x.qcow2');
  // A kiln domain from another state dir.
  r.hv.domains.set('elsewhere', { spec: { name: 'elsewhere', uuid: 'u', metadata: { instance: 'elsewhere', imageDigest: digest, kilnVersion: 'x' } } as never, state: 'running' });
  // A folder without a record (crash right after mkdir).
  const { mkdirSync } = await import('node:fs');
  mkdirSync(join(r.dir, 'empty'));

  // 'crashed' died mid-provisioning with only its first record written: the disk file, the
  // domain and the image reference exist, but the record names none of them.
  await r.service.provision(req('crashed'));
  const crashed = (await readRecord(r.dir, 'crashed'))!;
  await writeRecord(r.dir, { ...crashed, phase: 'provisioning', ready: false, image: null, disk: null, seed: null, domain: null, ssh: null });

  const report = await r.restart().reconcile();
  t.same(report.rolledBack.sort(), ['crashed', 'empty', 'half']);
  assertGone(t, r, 'crashed');
  t.same(report.released.sort(), [`${digest}:crashed`, `${digest}:ghost`].sort(), 'the crashed instance\'s reference is released too');
  t.same(report.redefined, ['lost-domain']);
  t.same(report.orphanDomains, ['elsewhere']);
  assertGone(t, r, 'half');
  t.ok(r.hv.domains.has('lost-domain'), 'lost domain defined again');
  t.equal(r.hv.domains.get('elsewhere')?.state, 'running', 'foreign kiln domain left alone');
  t.same(r.images.holders(), ['disk:/var/tmp/x.qcow2', 'lost-domain', 'survivor']);
});

t.test('ports already bound on the host are skipped', async (t) => {
  const r = rig(t);
  r.deps.portProbe = async (p) => p !== 40200;
  const svc = r.restart();
  const { instance } = await svc.provision(req('p'));
  t.equal(instance.ssh?.port, 40201);
});

t.test('networks other than user mode have no ssh forward and report addresses', async (t) => {
  const r = rig(t);
  const { instance } = await r.service.provision(req('nat', { network: 'default' }));
  t.equal(instance.ssh, null);
  t.same(instance.addresses, ['192.168.122.10']);
  t.same(r.hv.domains.get('nat')!.spec.network, { kind: 'network', name: 'default' });
  const bridged = await r.service.provision(req('br', { network: 'bridge:br0', bootVolume: '/dev/vg0/br' }));
  t.same(bridged.instance.disk, { device: '/dev/vg0/br', format: 'raw', virtualSize: 1 << 30, mode: 'volume' });
  t.same(r.hv.domains.get('br')!.spec.disk, { kind: 'block', device: '/dev/vg0/br' });
});
