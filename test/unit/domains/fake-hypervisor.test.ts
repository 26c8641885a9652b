// FakeHypervisor keeps the semantics its header documents (the same contract the libvirt
// integration tests check on test:///default), so callers' unit tests can trust it.
import t from 'tap';
import { FakeHypervisor } from '../../../agent/domains/fake-hypervisor.js';
import type { Hypervisor, LifecycleEvent } from '../../../agent/domains/hypervisor.js';
import { domainXml } from '../../../agent/domains/xml.js';
import { KilnError } from '../../../agent/errors.js';
import { makeSpec } from '../../integration/domains/helpers.js';

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try { await p; return undefined; } catch (e) { return e instanceof KilnError ? e.code : 'not a KilnError'; }
}

t.test('lifecycle, listing, tolerance', async (t) => {
  const hv: Hypervisor = new FakeHypervisor();
  const events: LifecycleEvent[] = [];
  hv.onLifecycle((e) => events.push(e));
  const spec = makeSpec({ metadata: { instance: 'a&b', imageDigest: 'sha256:1', kilnVersion: '1' } });
  t.equal(await code(hv.start(spec.name)), 'KILN_NOT_FOUND');
  await hv.define(domainXml(spec));
  t.same(await hv.state(spec.name), { state: 'shutoff', reason: 0 });
  await hv.start(spec.name);
  await hv.start(spec.name);
  t.same(await hv.listKiln(), [{ name: spec.name, state: 'running', metadata: spec.metadata }]);
  await hv.shutdown(spec.name, 10_000);
  t.equal((await hv.state(spec.name)).state, 'shutoff', 'ACPI honoured at once');
  await hv.destroy(spec.name);
  await hv.undefine(spec.name);
  await hv.undefine(spec.name);
  await hv.destroy(spec.name);
  t.equal(await code(hv.state(spec.name)), 'KILN_NOT_FOUND');
  await new Promise((r) => setImmediate(r));
  t.same(events.map((e) => e.event), ['defined', 'started', 'stopped', 'undefined']);
});

t.test('a guest ignoring ACPI is destroyed after the grace time', async (t) => {
  const hv = new FakeHypervisor();
  const spec = makeSpec();
  await hv.define(domainXml(spec));
  await hv.start(spec.name);
  hv.ignoreAcpi(spec.name);
  const t0 = Date.now();
  await hv.shutdown(spec.name, 150);
  t.ok(Date.now() - t0 >= 140, 'waited the grace time');
  t.equal((await hv.state(spec.name)).state, 'shutoff');
});

t.test('undefining a running domain leaves it transient until it stops', async (t) => {
  const hv = new FakeHypervisor();
  const spec = makeSpec();
  await hv.define(domainXml(spec));
  await hv.start(spec.name);
  await hv.undefine(spec.name);
  t.equal((await hv.state(spec.name)).state, 'running', 'still running');
  await hv.destroy(spec.name);
  t.equal(await code(hv.state(spec.name)), 'KILN_NOT_FOUND', 'gone once stopped');
});

t.test('faults, addresses, malformed XML, close', async (t) => {
  const hv = new FakeHypervisor();
  const spec = makeSpec();
  await hv.define(domainXml(spec));
  hv.failNext('start');
  t.equal(await code(hv.start(spec.name)), 'KILN_LIBVIRT', 'injected fault');
  await hv.start(spec.name);
  t.same(await hv.interfaceAddresses(spec.name), []);
  hv.setAddresses(spec.name, ['192.168.122.10']);
  t.same(await hv.interfaceAddresses(spec.name), ['192.168.122.10']);
  t.equal(await code(hv.define('<domain><oops/></domain>')), 'KILN_LIBVIRT');
  t.same(hv.calls.slice(0, 3).map((c) => c.op), ['define', 'start', 'start']);
  await hv.close();
  t.equal(await hv.isAlive(), false);
  t.equal(await code(hv.state(spec.name)), 'KILN_UNAVAILABLE');
});
