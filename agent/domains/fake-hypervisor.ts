// Owns: an in-memory Hypervisor for unit tests of callers (instances/, status), with documented
// semantics that mirror LibvirtHypervisor's contract (which libvirt's test:///default driver
// checks in test/integration/domains):
// - Calls work without connect() (the real one connects lazily too); after close() every call
//   fails with KILN_UNAVAILABLE, and isAlive() answers false.
// - define(xml) reads <name> and kiln's metadata element from the XML (as libvirt would) and
//   creates or replaces a persistent, shut-off domain; malformed XML is KILN_LIBVIRT (code 27).
// - start: KILN_NOT_FOUND when undefined; a running domain is left alone; emits 'started'.
// - shutdown(name, graceMs): a guest that honours ACPI (the default) stops at once ('stopped');
//   one marked with ignoreAcpi(name) stays up for graceMs, then is destroyed.
// - destroy/undefine: tolerant of "not running" and "no such domain". Undefining a running domain
//   leaves it transient: it vanishes when it stops (as in libvirt).
// - state: KILN_NOT_FOUND when absent; reason is always 0 (the fake has no reasons).
// - interfaceAddresses: what setAddresses() gave, else [].
// - failNext(op, error) makes the next call of op throw error (fault injection).
// Events are delivered asynchronously (microtask), like the real event loop's.
// Must not: be wired into kilnd; it exists for tests.
import { KilnError } from '../errors.js';
import { parseKilnMetadata } from './xml.js';
import type { DomainSpec, DomainState, Hypervisor, LifecycleEvent } from './hypervisor.js';

interface FakeDomain {
  name: string;
  xml: string;
  state: DomainState;
  persistent: boolean;
  metadata: DomainSpec['metadata'] | undefined;
  ignoreAcpi: boolean;
  addresses: string[];
}

type Op = 'connect' | 'define' | 'start' | 'shutdown' | 'destroy' | 'undefine' | 'state' | 'listKiln' | 'interfaceAddresses';

export class FakeHypervisor implements Hypervisor {
  readonly domains = new Map<string, FakeDomain>();
  /** Every call in order, for assertions ("define then start"). */
  readonly calls: Array<{ op: Op; name?: string }> = [];
  private readonly listeners = new Set<(e: LifecycleEvent) => void>();
  private readonly faults = new Map<Op, Error>();
  private closed = false;

  constructor(readonly uri = 'fake:///kiln') {}

  failNext(op: Op, error: Error = new KilnError('KILN_LIBVIRT', `fake failure in ${op}`, { libvirtCode: 1 })): void {
    this.faults.set(op, error);
  }

  ignoreAcpi(name: string, ignore = true): void {
    this.get(name).ignoreAcpi = ignore;
  }

  setAddresses(name: string, addresses: string[]): void {
    this.get(name).addresses = [...addresses];
  }

  private enter(op: Op, name?: string): void {
    this.calls.push(name === undefined ? { op } : { op, name });
    if (this.closed) throw new KilnError('KILN_UNAVAILABLE', `hypervisor ${this.uri} was closed`);
    const fault = this.faults.get(op);
    if (fault) {
      this.faults.delete(op);
      throw fault;
    }
  }

  private get(name: string): FakeDomain {
    const d = this.domains.get(name);
    if (!d) throw new KilnError('KILN_NOT_FOUND', `no libvirt domain named ${name}`, { domain: name });
    return d;
  }

  private emit(name: string, event: string, state: DomainState): void {
    const e = { name, event, state };
    for (const l of [...this.listeners]) queueMicrotask(() => l(e));
  }

  private setState(d: FakeDomain, state: DomainState, event: string): void {
    d.state = state;
    this.emit(d.name, event, state);
    if (state === 'shutoff' && !d.persistent) {
      this.domains.delete(d.name);
      this.emit(d.name, 'undefined', 'nostate');
    }
  }

  async connect(): Promise<void> {
    this.enter('connect');
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  async isAlive(): Promise<boolean> {
    return !this.closed;
  }

  async define(xml: string): Promise<void> {
    this.enter('define');
    const name = /<name>([^<]+)<\/name>/.exec(xml)?.[1];
    if (!name || !/^\s*<domain[\s>]/.test(xml)) throw new KilnError('KILN_LIBVIRT', 'virDomainDefineXMLFlags: XML error: missing domain name', { libvirtCode: 27 });
    const metaXml = /<metadata>\s*(<[^>]*instance[^>]*>)/.exec(xml)?.[1];
    const existing = this.domains.get(name);
    const d: FakeDomain = {
      name,
      xml,
      state: existing?.state ?? 'shutoff',
      persistent: true,
      metadata: metaXml ? parseKilnMetadata(metaXml) : undefined,
      ignoreAcpi: existing?.ignoreAcpi ?? false,
      addresses: existing?.addresses ?? [],
    };
    this.domains.set(name, d);
    this.emit(name, 'defined', 'nostate');
  }

  async start(name: string): Promise<void> {
    this.enter('start', name);
    const d = this.get(name);
    if (d.state !== 'running') this.setState(d, 'running', 'started');
  }

  async shutdown(name: string, graceMs: number): Promise<void> {
    this.enter('shutdown', name);
    const d = this.get(name);
    if (d.state === 'shutoff') return;
    if (d.ignoreAcpi && graceMs > 0) await new Promise((r) => setTimeout(r, graceMs));
    if (this.domains.get(name) === d && (d.state as DomainState) !== 'shutoff') this.setState(d, 'shutoff', 'stopped');
  }

  async destroy(name: string): Promise<void> {
    this.enter('destroy', name);
    const d = this.domains.get(name);
    if (d && d.state !== 'shutoff') this.setState(d, 'shutoff', 'stopped');
  }

  async undefine(name: string): Promise<void> {
    this.enter('undefine', name);
    const d = this.domains.get(name);
    if (!d) return;
    if (d.state === 'shutoff') {
      this.domains.delete(name);
      this.emit(name, 'undefined', 'nostate');
    } else {
      d.persistent = false;
    }
  }

  async state(name: string): Promise<{ state: DomainState; reason: number }> {
    this.enter('state', name);
    return { state: this.get(name).state, reason: 0 };
  }

  async listKiln(): Promise<Array<{ name: string; state: DomainState; metadata: DomainSpec['metadata'] }>> {
    this.enter('listKiln');
    return [...this.domains.values()]
      .filter((d) => d.metadata !== undefined)
      .map((d) => ({ name: d.name, state: d.state, metadata: d.metadata! }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  async interfaceAddresses(name: string): Promise<string[]> {
    this.enter('interfaceAddresses', name);
    return [...this.get(name).addresses];
  }

  onLifecycle(cb: (e: LifecycleEvent) => void): () => void {
    this.listeners.add(cb);
    return () => { this.listeners.delete(cb); };
  }
}
