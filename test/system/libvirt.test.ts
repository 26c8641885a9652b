// A real guest on the real libvirtd (qemu:///system, started by scripts/setup): kiln's domain
// XML with a tiny blank disk and a seed cdrom boots SeaBIOS under QEMU (TCG here). Proves state
// running, lifecycle events from the real daemon, the serial console logged to the instance
// folder, listing by metadata, graceful shutdown falling back to destroy (SeaBIOS ignores ACPI),
// and undefine, with everything removed in teardown.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LibvirtHypervisor } from '../../agent/domains/libvirt-hypervisor.js';
import { hostDomainType } from '../../agent/domains/host.js';
import { domainXml } from '../../agent/domains/xml.js';
import type { LifecycleEvent } from '../../agent/domains/hypervisor.js';
import { silentLogger } from '../../agent/log.js';
import { makeSpec, rejectsCode, uniqueName, waitForEvent } from '../integration/domains/helpers.js';

const URI = 'qemu:///system';

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

t.test('a SeaBIOS guest runs, logs its console, stops and is undefined', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-sys-'));
  chmodSync(dir, 0o700);
  const hv = new LibvirtHypervisor(URI, silentLogger());
  const name = uniqueName('kiln-test');
  t.teardown(async () => {
    await hv.destroy(name).catch(() => undefined);
    await hv.undefine(name).catch(() => undefined);
    await hv.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await hv.connect();
  t.equal(await hv.isAlive(), true, `connected to ${URI} (libvirt ${await hv.libVersion()})`);
  t.equal(hv.eventSource, 'events', 'the qemu driver delivers lifecycle events');

  const disk = join(dir, 'disk.raw');
  writeFileSync(disk, '');
  truncateSync(disk, 1024 * 1024);
  const seedSrc = join(dir, 'meta-data');
  writeFileSync(seedSrc, `instance-id: ${name}\n`);
  const seed = join(dir, 'seed.iso');
  execFileSync('genisoimage', ['-quiet', '-V', 'cidata', '-J', '-r', '-o', seed, seedSrc]);
  const port = 30000 + Math.floor(Math.random() * 20000);
  const spec = makeSpec({
    name,
    domainType: hostDomainType(),
    memoryBytes: 128 * 1024 * 1024,
    disk: { kind: 'file', path: disk, format: 'raw' },
    seed: { path: seed },
    consoleLogPath: join(dir, 'console.log'),
    network: { kind: 'user', sshHostPort: port },
  });

  const events: LifecycleEvent[] = [];
  hv.onLifecycle((e) => { if (e.name === name) events.push(e); });
  const started = waitForEvent<LifecycleEvent>((e) => e.name === name && e.event === 'started', 60_000);
  hv.onLifecycle(started.sink);

  await hv.define(domainXml(spec));
  t.equal((await hv.state(name)).state, 'shutoff', 'defined, not running');
  const t0 = Date.now();
  await hv.start(name);
  t.equal((await hv.state(name)).state, 'running', 'state running');
  await started.done;
  t.pass('started event from libvirtd');

  const log = await until('SeaBIOS on the serial console log', 60_000, () => {
    const text = existsSync(spec.consoleLogPath) ? readFileSync(spec.consoleLogPath, 'latin1') : '';
    return /SeaBIOS/.test(text) && /Booting from Hard Disk/.test(text) ? text : undefined;
  });
  t.comment(`console log: ${log.length} bytes, SeaBIOS reached the boot attempt ${Date.now() - t0} ms after start`);
  t.match(log, /SeaBIOS \(version/, 'console log written by the guest');
  t.match(log, /iPXE.*00:10\.0/, 'the user-mode NIC sits at pcie.0 slot 0x10');

  const mine = (await hv.listKiln()).find((d) => d.name === name);
  t.same(mine, { name, state: 'running', metadata: spec.metadata }, 'listed by kiln metadata');
  t.same(await hv.interfaceAddresses(name), [], 'no leases for user-mode networking');

  const stopped = waitForEvent<LifecycleEvent>((e) => e.name === name && e.event === 'stopped', 30_000);
  hv.onLifecycle(stopped.sink);
  const s0 = Date.now();
  await hv.shutdown(name, 1500);
  const took = Date.now() - s0;
  t.equal((await hv.state(name)).state, 'shutoff', 'off after shutdown');
  t.ok(took >= 1400, `waited the grace period before destroying (${took} ms): SeaBIOS ignores ACPI`);
  await stopped.done;

  await hv.undefine(name);
  await rejectsCode(t, hv.state(name), 'KILN_NOT_FOUND');
  // qemu also reports 'shutdown' (detail: host signal) when destroy SIGTERMs it.
  t.same(events.map((e) => e.event).filter((e) => e !== 'resumed' && e !== 'shutdown'), ['defined', 'started', 'stopped', 'undefined'], 'lifecycle events in order');
});
