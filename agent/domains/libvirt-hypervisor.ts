// Owns: the real Hypervisor on native/libvirt.ts: kiln's lifecycle semantics (idempotent start,
// graceful shutdown then destroy, tolerant destroy/undefine), libvirt errors turned into kiln's
// codes, lifecycle events (libvirt's event loop, polling only where the driver has no events),
// and lazy reconnection after libvirtd restarts or the connection drops.
// Must not: build XML (xml.ts does), keep domain handles (native/ frees them per call), or know
// about instances; domains are tracked by name only, so a reconnect loses nothing.
import type { Logger } from '../log.js';
import { KilnError } from '../errors.js';
import { LibvirtConnection, VIR_ERR, libvirtCode, type LifecycleEvent as NativeEvent } from '../../native/libvirt.js';
import { KILN_METADATA_NS, consoleLogPathOf, parseKilnMetadata } from './xml.js';
import { eventOfState, stateOfEvent, type DomainSpec, type DomainState, type Hypervisor, type LifecycleEvent } from './hypervisor.js';

export interface LibvirtHypervisorOptions {
  /** 'auto': libvirt lifecycle events, polling if the driver lacks them; 'poll': always poll. */
  events?: 'auto' | 'poll';
  /** Polling period of the fallback (and of shutdown's wait when no event arrives). */
  pollIntervalMs?: number;
  /** Keepalive probe interval in seconds on remote connections (0 disables). */
  keepaliveInterval?: number;
  /** Test hook: another libvirt library path. */
  library?: string;
}

const CONNECTION_LOST = new Set<number>([VIR_ERR.NO_CONNECT, VIR_ERR.SYSTEM_ERROR, VIR_ERR.RPC, VIR_ERR.INTERNAL_ERROR]);

export class LibvirtHypervisor implements Hypervisor {
  private conn: LibvirtConnection | undefined;
  private connecting: Promise<LibvirtConnection> | undefined;
  private readonly listeners = new Set<(e: LifecycleEvent) => void>();
  private readonly log: Logger;
  private readonly opts: Required<Omit<LibvirtHypervisorOptions, 'library'>> & { library?: string };
  private pollTimer: NodeJS.Timeout | undefined;
  private polling = false;
  private lastPoll: Map<string, DomainState> | undefined;
  private closed = false;
  private connectedOnce = false;
  /** How many times a lost connection was replaced (status and tests). */
  reconnects = 0;
  /** Which event source feeds onLifecycle: libvirt events or the polling fallback. */
  eventSource: 'events' | 'poll' | 'none' = 'none';

  constructor(readonly uri: string, log: Logger, options: LibvirtHypervisorOptions = {}) {
    this.log = log.child({ component: 'domains', uri });
    this.opts = {
      events: options.events ?? 'auto',
      pollIntervalMs: options.pollIntervalMs ?? 2000,
      keepaliveInterval: options.keepaliveInterval ?? 5,
      ...(options.library ? { library: options.library } : {}),
    };
  }

  async connect(): Promise<void> {
    await this.connection();
  }

  /** The live connection, opened (again) on demand: single flight, events re-subscribed. */
  private connection(): Promise<LibvirtConnection> {
    if (this.closed) return Promise.reject(new KilnError('KILN_UNAVAILABLE', `libvirt connection to ${this.uri} was closed by kiln`));
    if (this.conn?.isOpen) return Promise.resolve(this.conn);
    this.connecting ??= (async () => {
      const old = this.conn;
      this.conn = undefined;
      if (old) {
        this.log.warn({ reason: old.closedReason }, 'libvirt connection lost; reconnecting');
        await old.close().catch(() => undefined);
      }
      const conn = await LibvirtConnection.open(this.uri, {
        keepaliveInterval: this.opts.keepaliveInterval,
        ...(this.opts.library ? { library: this.opts.library } : {}),
      });
      conn.onClosed((reason) => this.log.warn({ reason }, 'libvirt closed the connection'));
      if (this.connectedOnce) this.reconnects++;
      this.connectedOnce = true;
      const subscribed = this.opts.events === 'auto' && (await conn.subscribeLifecycle((e) => this.onNativeEvent(e)));
      if (this.closed) { await conn.close(); throw new KilnError('KILN_UNAVAILABLE', 'closed while connecting'); }
      this.conn = conn;
      if (subscribed) {
        this.stopPolling();
        this.eventSource = 'events';
      } else {
        this.eventSource = 'poll';
        this.startPolling();
      }
      this.log.info({ eventSource: this.eventSource, reconnects: this.reconnects }, 'libvirt connected');
      return conn;
    })().finally(() => { this.connecting = undefined; });
    return this.connecting;
  }

  /**
   * Runs op on the connection. When it fails because the connection is gone, the connection is
   * marked lost (the next call reconnects); idempotent ops are retried once on a fresh one.
   */
  private async run<R>(op: (c: LibvirtConnection) => Promise<R>, idempotent: boolean): Promise<R> {
    const conn = await this.connection();
    try {
      return await op(conn);
    } catch (e) {
      const code = libvirtCode(e);
      if (code === undefined || !CONNECTION_LOST.has(code) || (await conn.isAlive())) throw e;
      conn.markClosed('call failed: connection lost');
      if (!idempotent) throw e;
      return op(await this.connection());
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopPolling();
    await this.connecting?.catch(() => undefined);
    const c = this.conn;
    this.conn = undefined;
    await c?.close();
  }

  async isAlive(): Promise<boolean> {
    try {
      return await (await this.connection()).isAlive();
    } catch {
      return false;
    }
  }

  /**
   * The `kiln status` probe: connects if needed, so a down libvirtd shows as an error message
   * rather than a bare `connected: false`.
   */
  async status(): Promise<{ connected: boolean; libvirtVersion?: string; eventSource: string; reconnects: number; error?: string }> {
    try {
      const version = await this.libVersion();
      return { connected: await this.isAlive(), libvirtVersion: version, eventSource: this.eventSource, reconnects: this.reconnects };
    } catch (e) {
      return { connected: false, eventSource: this.eventSource, reconnects: this.reconnects, error: (e as Error).message };
    }
  }

  /** libvirt's version as the daemon reports it (`kiln status`). */
  async libVersion(): Promise<string> {
    return this.run((c) => c.libVersion(), true);
  }

  async define(xml: string): Promise<void> {
    await this.run((c) => c.defineXML(xml), true);
  }

  async start(name: string): Promise<void> {
    try {
      await this.run((c) => c.create(name), false);
    } catch (e) {
      const code = libvirtCode(e);
      if (code === VIR_ERR.NO_DOMAIN) throw notFound(name, e);
      // "already running" (OPERATION_INVALID on qemu, INTERNAL_ERROR on the test driver):
      // starting is idempotent, so a domain found running afterwards is success.
      if ((await this.state(name).catch(() => undefined))?.state === 'running') return;
      throw e;
    }
  }

  async shutdown(name: string, graceMs: number): Promise<void> {
    const initial = await this.state(name);
    if (initial.state === 'shutoff') return;
    if (graceMs > 0 && initial.state === 'running') {
      try {
        await this.run((c) => c.shutdown(name), false);
        if (await this.waitFor(name, 'shutoff', graceMs)) return;
        this.log.warn({ domain: name, graceMs }, 'guest did not shut down in time; destroying');
      } catch (e) {
        if (libvirtCode(e) === VIR_ERR.NO_DOMAIN) return;
        if (libvirtCode(e) !== VIR_ERR.OPERATION_INVALID) throw e;
      }
    }
    await this.destroy(name);
  }

  /** Resolves true once the domain reaches `want` (event or poll), false after timeoutMs. */
  private waitFor(name: string, want: DomainState, timeoutMs: number): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      let done = false;
      const finish = (ok: boolean) => {
        if (done) return;
        done = true;
        unsubscribe();
        clearTimeout(timer);
        clearInterval(poll);
        resolve(ok);
      };
      const unsubscribe = this.onLifecycle((e) => { if (e.name === name && e.state === want) finish(true); });
      const timer = setTimeout(() => finish(false), timeoutMs);
      // Events can be lost across a reconnect: poll too, slower than events but never stuck.
      const poll = setInterval(() => {
        this.state(name).then((s) => { if (s.state === want) finish(true); }, (e: unknown) => { if ((e as KilnError).code === 'KILN_NOT_FOUND') finish(true); });
      }, Math.min(this.opts.pollIntervalMs, 500));
    });
  }

  async destroy(name: string): Promise<void> {
    try {
      await this.run((c) => c.destroy(name), true);
    } catch (e) {
      const code = libvirtCode(e);
      if (code === VIR_ERR.NO_DOMAIN) return; // already gone
      if (code === VIR_ERR.OPERATION_INVALID) return; // already off
      throw e;
    }
  }

  async undefine(name: string): Promise<void> {
    try {
      await this.run((c) => c.undefine(name), true);
    } catch (e) {
      if (libvirtCode(e) === VIR_ERR.NO_DOMAIN) return; // already undefined
      throw e;
    }
  }

  async state(name: string): Promise<{ state: DomainState; reason: number }> {
    try {
      return await this.run((c) => c.state(name), true);
    } catch (e) {
      if (libvirtCode(e) === VIR_ERR.NO_DOMAIN) throw notFound(name, e);
      throw e;
    }
  }

  async listKiln(): Promise<Array<{ name: string; state: DomainState; metadata: DomainSpec['metadata'] }>> {
    const all = await this.run((c) => c.listAll(KILN_METADATA_NS), true);
    const out: Array<{ name: string; state: DomainState; metadata: DomainSpec['metadata'] }> = [];
    for (const d of all) {
      const metadata = d.metadata === null ? undefined : parseKilnMetadata(d.metadata, true);
      if (metadata) out.push({ name: d.name, state: d.state, metadata });
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  async interfaceAddresses(name: string): Promise<string[]> {
    try {
      const ifaces = await this.run((c) => c.interfaceAddresses(name), true);
      return ifaces.flatMap((i) => i.addresses.map((a) => a.addr));
    } catch (e) {
      const code = libvirtCode(e);
      if (code === VIR_ERR.NO_DOMAIN) throw notFound(name, e);
      // Not running, or no lease source for this NIC type (user-mode networking).
      if (code === VIR_ERR.OPERATION_INVALID || code === VIR_ERR.NO_SUPPORT || code === VIR_ERR.INVALID_ARG) return [];
      throw e;
    }
  }

  /** The console log file libvirt has for the domain (from its live XML); undefined if none. */
  async consoleLogPath(name: string): Promise<string | undefined> {
    try {
      return consoleLogPathOf(await this.run((c) => c.xmlDesc(name), true));
    } catch (e) {
      if (libvirtCode(e) === VIR_ERR.NO_DOMAIN) throw notFound(name, e);
      throw e;
    }
  }

  onLifecycle(cb: (e: LifecycleEvent) => void): () => void {
    this.listeners.add(cb);
    return () => { this.listeners.delete(cb); };
  }

  private emit(e: LifecycleEvent): void {
    for (const l of [...this.listeners]) {
      try { l(e); } catch (err) { this.log.error({ err }, 'lifecycle listener failed'); }
    }
  }

  private onNativeEvent(e: NativeEvent): void {
    this.log.debug({ domain: e.name, event: e.event, detail: e.detail }, 'domain event');
    this.emit({ name: e.name, event: e.event, state: stateOfEvent(e.event) });
  }

  private startPolling(): void {
    if (this.pollTimer) return;
    this.pollTimer = setInterval(() => void this.pollOnce(), this.opts.pollIntervalMs);
    this.pollTimer.unref();
    void this.pollOnce();
  }

  private stopPolling(): void {
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    this.lastPoll = undefined;
  }

  /** The fallback: diff every domain's state against the previous poll, emit synthetic events. */
  private async pollOnce(): Promise<void> {
    if (this.polling || this.closed) return;
    this.polling = true;
    try {
      const conn = await this.connection();
      const now = new Map((await conn.listAll(KILN_METADATA_NS)).map((d) => [d.name, d.state] as const));
      const before = this.lastPoll;
      this.lastPoll = now;
      if (!before) return;
      for (const [name, state] of now) {
        const prev = before.get(name);
        if (prev === undefined) this.emit({ name, event: 'defined', state: 'nostate' });
        if (prev !== state && !(prev === undefined && state === 'shutoff')) this.emit({ name, event: eventOfState(state), state });
      }
      for (const name of before.keys()) if (!now.has(name)) this.emit({ name, event: 'undefined', state: 'nostate' });
    } catch (err) {
      this.log.warn({ err }, 'domain state poll failed');
    } finally {
      this.polling = false;
    }
  }
}

function notFound(name: string, cause: unknown): KilnError {
  return new KilnError('KILN_NOT_FOUND', `no libvirt domain named ${name}`, { domain: name }, { cause });
}
