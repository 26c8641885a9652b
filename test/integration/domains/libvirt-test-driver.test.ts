// LibvirtHypervisor and native/libvirt.ts against libvirt's test:///default driver (in-process,
// no daemon): lifecycle, state, listing by metadata, error codes, concurrent failing calls each
// getting their own error, lifecycle events (libvirt events and the polling fallback), missing
// library/symbol errors, and the event loop giving its pool thread back on close.
import t from 'tap';
import { LibvirtHypervisor } from '../../../agent/domains/libvirt-hypervisor.js';
import { domainXml } from '../../../agent/domains/xml.js';
import type { LifecycleEvent } from '../../../agent/domains/hypervisor.js';
import { silentLogger } from '../../../agent/log.js';
import { LibvirtConnection, VIR_ERR, eventLoopActive } from '../../../native/libvirt.js';
import { makeSpec, rejectsCode, uniqueName, waitForEvent } from './helpers.js';

const URI = 'test:///default';
const log = silentLogger();

t.test('define, start, state, list, shutdown, destroy, undefine', async (t) => {
  const hv = new LibvirtHypervisor(URI, log);
  t.teardown(() => hv.close());
  await hv.connect();
  t.equal(await hv.isAlive(), true, 'connection alive');
  const spec = makeSpec({ metadata: { instance: 'web <1> & "two"', imageDigest: 'sha256:' + 'cd'.repeat(32), kilnVersion: '9.9.9' } });
  await hv.define(domainXml(spec));
  const st = await hv.state(spec.name);
  t.equal(st.state, 'shutoff', 'defined domains are shut off');
  t.equal(typeof st.reason, 'number', 'with a reason number');
  await hv.define(domainXml(spec)); // redefining the same spec is accepted
  await hv.start(spec.name);
  t.equal((await hv.state(spec.name)).state, 'running');
  await hv.start(spec.name); // idempotent
  t.equal((await hv.state(spec.name)).state, 'running', 'start of a running domain is a no-op');

  const listed = (await hv.listKiln()).find((d) => d.name === spec.name);
  t.same(listed, { name: spec.name, state: 'running', metadata: spec.metadata }, 'listed by metadata, values unescaped');
  t.notOk((await hv.listKiln()).some((d) => d.name === 'test'), "the driver's own domain (no kiln metadata) is not listed");

  t.equal(await hv.consoleLogPath(spec.name), spec.consoleLogPath, 'console log path read back from libvirt');
  const addrs = await hv.interfaceAddresses(spec.name);
  t.ok(Array.isArray(addrs), 'interface addresses answer a list');

  await hv.shutdown(spec.name, 5000);
  t.equal((await hv.state(spec.name)).state, 'shutoff', 'graceful shutdown');
  await hv.shutdown(spec.name, 5000); // already off

  await hv.start(spec.name);
  await hv.destroy(spec.name);
  t.equal((await hv.state(spec.name)).state, 'shutoff', 'destroyed');
  await hv.destroy(spec.name); // tolerant of "not running"
  await hv.undefine(spec.name);
  await rejectsCode(t, hv.state(spec.name), 'KILN_NOT_FOUND');
  await hv.undefine(spec.name); // tolerant of "no such domain"
  await hv.destroy(spec.name); // likewise
  t.notOk((await hv.listKiln()).some((d) => d.name === spec.name), 'gone from the listing');
});

t.test('libvirt errors carry code, domain and message; absent domains are KILN_NOT_FOUND', async (t) => {
  const hv = new LibvirtHypervisor(URI, log);
  t.teardown(() => hv.close());
  const e1 = await rejectsCode(t, hv.define('<domain type="test"><name>x</name>'), 'KILN_LIBVIRT');
  t.equal(e1.details.libvirtCode, VIR_ERR.XML_DETAIL, 'malformed XML: VIR_ERR_XML_DETAIL');
  t.equal(e1.details.libvirtDomain, 20, 'from VIR_FROM_XML');
  t.match(String(e1.details.libvirtMessage), /Premature end of data in tag domain/);
  t.equal(e1.details.symbol, 'virDomainDefineXMLFlags', 'names the libvirt call');

  const missing = uniqueName('kiln-missing');
  const e2 = await rejectsCode(t, hv.start(missing), 'KILN_NOT_FOUND');
  t.equal((e2.cause as { details: { libvirtCode: number } }).details.libvirtCode, VIR_ERR.NO_DOMAIN, 'caused by VIR_ERR_NO_DOMAIN');
  await rejectsCode(t, hv.interfaceAddresses(missing), 'KILN_NOT_FOUND');

  const bad = new LibvirtHypervisor('nonsense:///nowhere', log);
  t.teardown(() => bad.close());
  const e3 = await rejectsCode(t, bad.connect(), 'KILN_LIBVIRT');
  t.equal(e3.details.libvirtCode, VIR_ERR.NO_CONNECT, 'unknown URI: VIR_ERR_NO_CONNECT');
  t.equal(e3.details.uri, 'nonsense:///nowhere');
  t.equal(await bad.isAlive(), false);
});

t.test('concurrent async calls each get their own error', async (t) => {
  // Two connections run in parallel (each serializes its own calls); within one, calls are queued.
  const a = await LibvirtConnection.open(URI);
  const b = await LibvirtConnection.open(URI);
  t.teardown(async () => { await a.close(); await b.close(); });
  const good = makeSpec();
  const ops: Array<{ kind: 'badname' | 'missing' | 'good'; i: number; p: Promise<unknown> }> = [];
  for (let i = 0; i < 40; i++) {
    const conn = i % 2 ? a : b;
    if (i % 3 === 0) ops.push({ kind: 'badname', i, p: conn.defineXML(`<domain type="test"><name>bad/${i}</name><memory>1024</memory><os><type>hvm</type></os></domain>`) });
    else if (i % 3 === 1) ops.push({ kind: 'missing', i, p: conn.state(`kiln-absent-${i}`) });
    else ops.push({ kind: 'good', i, p: conn.state('test') });
  }
  ops.push({ kind: 'good', i: 99, p: a.defineXML(domainXml(good)) });
  const settled = await Promise.allSettled(ops.map((o) => o.p));
  let checked = 0;
  settled.forEach((r, k) => {
    const o = ops[k]!;
    if (o.kind === 'good') {
      t.equal(r.status, 'fulfilled', `good call ${o.i} succeeded`);
    } else if (o.kind === 'badname') {
      t.equal(r.status, 'rejected');
      const e = (r as PromiseRejectedResult).reason as { details: Record<string, unknown> };
      t.match(String(e.details.libvirtMessage), new RegExp(`bad/${o.i}\\b`), `define ${o.i} got its own message`);
      t.equal(e.details.libvirtCode, VIR_ERR.XML_ERROR);
    } else {
      t.equal(r.status, 'rejected');
      const e = (r as PromiseRejectedResult).reason as { details: Record<string, unknown> };
      t.equal(e.details.libvirtCode, VIR_ERR.NO_DOMAIN, `lookup ${o.i} got NO_DOMAIN`);
    }
    checked++;
  });
  t.equal(checked, 41);
  await a.undefine(good.name);
});

t.test('lifecycle events arrive through libvirt events', async (t) => {
  const hv = new LibvirtHypervisor(URI, log);
  t.teardown(() => hv.close());
  await hv.connect();
  t.equal(hv.eventSource, 'events', 'the test driver has lifecycle events');
  const spec = makeSpec();
  const seen: LifecycleEvent[] = [];
  const off = hv.onLifecycle((e) => { if (e.name === spec.name) seen.push(e); });
  const stopped = waitForEvent<LifecycleEvent>((e) => e.name === spec.name && e.event === 'undefined', 5000);
  const off2 = hv.onLifecycle(stopped.sink);
  await hv.define(domainXml(spec));
  await hv.start(spec.name);
  await hv.destroy(spec.name);
  await hv.undefine(spec.name);
  await stopped.done;
  off(); off2();
  t.same(seen.map((e) => e.event), ['defined', 'started', 'stopped', 'undefined'], 'events in order');
  t.same(seen.map((e) => e.state), ['nostate', 'running', 'shutoff', 'nostate'], 'states implied');
});

t.test('polling fallback emits the same transitions', async (t) => {
  const hv = new LibvirtHypervisor(URI, log, { events: 'poll', pollIntervalMs: 50 });
  t.teardown(() => hv.close());
  await hv.connect();
  t.equal(hv.eventSource, 'poll');
  await new Promise((r) => setTimeout(r, 120)); // first poll is the baseline
  const spec = makeSpec();
  const started = waitForEvent<LifecycleEvent>((e) => e.name === spec.name && e.event === 'started', 5000);
  const off = hv.onLifecycle(started.sink);
  await hv.define(domainXml(spec));
  await hv.start(spec.name);
  const e = await started.done;
  t.equal(e.state, 'running');
  off();
  const gone = waitForEvent<LifecycleEvent>((e) => e.name === spec.name && e.event === 'undefined', 5000);
  const off2 = hv.onLifecycle(gone.sink);
  await hv.destroy(spec.name);
  await hv.undefine(spec.name);
  t.equal((await gone.done).state, 'nostate');
  off2();
});

t.test('missing library or symbol fails loudly by name', async (t) => {
  const hv = new LibvirtHypervisor(URI, log, { library: '/nonexistent/libvirt.so.0' });
  const e = await rejectsCode(t, hv.connect(), 'KILN_LIBVIRT');
  t.equal(e.details.library, '/nonexistent/libvirt.so.0');
  t.match(e.message, /cannot load \/nonexistent\/libvirt\.so\.0/);
  const hv2 = new LibvirtHypervisor(URI, log, { library: 'libc.so.6' });
  const e2 = await rejectsCode(t, hv2.connect(), 'KILN_LIBVIRT');
  t.equal(e2.details.symbol, 'virInitialize', 'the first missing symbol is named');
  t.match(e2.message, /libc\.so\.6 lacks symbol virInitialize/);
});

t.test('close frees the connection once and returns the event loop thread', async (t) => {
  const hv = new LibvirtHypervisor(URI, log);
  await hv.connect();
  t.equal(eventLoopActive(), true, 'event loop runs while a connection is open');
  await hv.close();
  await hv.close(); // idempotent
  t.equal(eventLoopActive(), false, 'event loop stopped with the last connection');
  await rejectsCode(t, hv.state('test'), 'KILN_UNAVAILABLE');
  t.equal(await hv.isAlive(), false);
});

t.test('parallel lifecycles through one hypervisor, failures interleaved', async (t) => {
  const hv = new LibvirtHypervisor(URI, log);
  t.teardown(() => hv.close());
  const specs = Array.from({ length: 12 }, () => makeSpec());
  const flows = specs.map(async (spec, i) => {
    await hv.define(domainXml(spec));
    await hv.start(spec.name);
    const missing = await hv.start(`${spec.name}-absent`).then(() => 'resolved', (e: { code: string; details: Record<string, unknown> }) => `${e.code}:${String(e.details.domain)}`);
    const state = (await hv.state(spec.name)).state;
    if (i % 2) await hv.shutdown(spec.name, 2000); else await hv.destroy(spec.name);
    await hv.undefine(spec.name);
    return { missing, state };
  });
  const results = await Promise.all(flows);
  results.forEach((r, i) => {
    t.equal(r.state, 'running', `flow ${i} saw its domain running`);
    t.equal(r.missing, `KILN_NOT_FOUND:${specs[i]!.name}-absent`, `flow ${i} got its own not-found`);
  });
  const left = (await hv.listKiln()).filter((d) => specs.some((s) => s.name === d.name));
  t.same(left, [], 'all undefined');
});
