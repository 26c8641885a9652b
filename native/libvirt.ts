// Owns: the FFI boundary to libvirt.so.0: the explicit, typed list of every libvirt symbol kiln
// uses, the opaque handle types, the error capture (virSetErrorFunc/virConnSetErrorFunc), the
// default event loop (virEventRunDefaultImpl on a pool thread) and LibvirtConnection, which owns
// one virConnectPtr and every domain handle it looks up, each freed exactly once.
// Must not: build domain XML, know kiln's metadata or instance semantics (agent/domains/ does),
// call a blocking libvirt function on the JS thread, or let a raw pointer leave this file.
//
// Why the shape:
// - koffi pointers are unchecked BigInts: a stale or wrong handle crashes the process. Handles
//   therefore never leave LibvirtConnection; domains are looked up by name per operation and
//   freed in `finally`.
// - Every call that may do I/O (RPC to libvirtd, qemu monitor) runs with koffi's `.async` on the
//   libuv pool. The only synchronous calls are the ones that never block: virInitialize,
//   virEventRegisterDefaultImpl, virEventAddTimeout/UpdateTimeout, virSetErrorFunc,
//   virConnSetErrorFunc and virDomainGetName (a field read, used inside event callbacks).
// - libvirt errors are thread-local, so virGetLastError is useless after an async call. libvirt
//   invokes the error handler on the failing thread; koffi relays it to the JS thread and blocks
//   that worker until the handler returned, so the handler always runs before the call's own
//   completion. Each connection has its own handler (userData = its id) and runs ONE call at a
//   time, so the error recorded in its slot belongs to the call in flight. Connection-less errors
//   (a failed virConnectOpen) go to the global handler; opens are serialized process-wide.
// - The libvirt library, its event loop and the callback trampolines are process-global in libvirt
//   itself, so they are mirrored by the few module-level values below (not service singletons).
import koffi, { type LibraryHandle } from 'koffi';
import { KilnError } from '../agent/errors.js';

export const DEFAULT_LIBRARY = 'libvirt.so.0';

/** libvirt's virErrorNumber values kiln branches on (libvirt/virterror.h). */
export const VIR_ERR = {
  INTERNAL_ERROR: 1,
  NO_SUPPORT: 3,
  NO_CONNECT: 5,
  INVALID_ARG: 8,
  XML_ERROR: 27,
  XML_DETAIL: 35,
  SYSTEM_ERROR: 38,
  RPC: 39,
  NO_DOMAIN: 42,
  OPERATION_INVALID: 55,
  NO_DOMAIN_METADATA: 80,
} as const;

/** virDomainState. */
export const VIR_DOMAIN_STATE = ['nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended'] as const;
export type NativeDomainState = (typeof VIR_DOMAIN_STATE)[number];

/** virDomainEventType (lifecycle). */
export const VIR_DOMAIN_EVENT = ['defined', 'undefined', 'started', 'suspended', 'resumed', 'stopped', 'shutdown', 'pmsuspended', 'crashed'] as const;

const VIR_DOMAIN_EVENT_ID_LIFECYCLE = 0;
const VIR_DOMAIN_METADATA_ELEMENT = 2;
const VIR_DOMAIN_UNDEFINE_MANAGED_SAVE = 1;
const VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA = 2;
const VIR_DOMAIN_UNDEFINE_NVRAM = 4;
const VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA = 16;
const VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE = 0;
const VIR_CONNECT_CLOSE_REASON = ['error', 'eof', 'keepalive', 'client'] as const;

export interface LibvirtErrorInfo {
  code: number;
  domain: number;
  message: string;
  level: number;
}

// ---- types (defined once per process: koffi type names are global) ----

const T = (() => {
  const virConnect = koffi.opaque('virConnect');
  const virDomain = koffi.opaque('virDomain');
  const virError = koffi.struct('virError', {
    code: 'int', domain: 'int', message: 'str', level: 'int',
    conn: 'void *', dom: 'void *', str1: 'str', str2: 'str', str3: 'str', int1: 'int', int2: 'int', net: 'void *',
  });
  const virDomainIPAddress = koffi.struct('virDomainIPAddress', { type: 'int', addr: 'str', prefix: 'uint' });
  const virDomainInterface = koffi.struct('virDomainInterface', { name: 'str', hwaddr: 'str', naddrs: 'uint', addrs: 'void *' });
  const errorFunc = koffi.proto('void virErrorFunc(void *userData, virError *err)');
  const lifecycleFunc = koffi.proto('int virConnectDomainEventLifecycleCallback(virConnect *conn, virDomain *dom, int event, int detail, void *opaque)');
  const closeFunc = koffi.proto('void virConnectCloseFunc(virConnect *conn, int reason, void *opaque)');
  const timeoutFunc = koffi.proto('void virEventTimeoutCallback(int timer, void *opaque)');
  return { virConnect, virDomain, virError, virDomainIPAddress, virDomainInterface, errorFunc, lifecycleFunc, closeFunc, timeoutFunc };
})();

type Ptr = bigint;
type AnyFn = ((...args: any[]) => any) & { async: (...args: any[]) => void };

/** Every libvirt symbol kiln uses, with its C prototype. A missing one fails by name at load. */
const SYMBOLS = {
  virInitialize: 'int virInitialize()',
  virGetVersion: 'int virGetVersion(_Out_ unsigned long *libVer, const char *type, _Out_ unsigned long *typeVer)',
  virSetErrorFunc: 'void virSetErrorFunc(void *userData, virErrorFunc *handler)',
  virConnSetErrorFunc: 'void virConnSetErrorFunc(virConnect *conn, void *userData, virErrorFunc *handler)',
  virEventRegisterDefaultImpl: 'int virEventRegisterDefaultImpl()',
  virEventRunDefaultImpl: 'int virEventRunDefaultImpl()',
  virEventAddTimeout: 'int virEventAddTimeout(int frequency, virEventTimeoutCallback *cb, void *opaque, void *ff)',
  virEventUpdateTimeout: 'void virEventUpdateTimeout(int timer, int frequency)',
  virConnectOpen: 'virConnect *virConnectOpen(const char *name)',
  virConnectClose: 'int virConnectClose(virConnect *conn)',
  virConnectIsAlive: 'int virConnectIsAlive(virConnect *conn)',
  virConnectSetKeepAlive: 'int virConnectSetKeepAlive(virConnect *conn, int interval, unsigned int count)',
  virConnectGetLibVersion: 'int virConnectGetLibVersion(virConnect *conn, _Out_ unsigned long *libVer)',
  virConnectRegisterCloseCallback: 'int virConnectRegisterCloseCallback(virConnect *conn, virConnectCloseFunc *cb, void *opaque, void *freecb)',
  virConnectUnregisterCloseCallback: 'int virConnectUnregisterCloseCallback(virConnect *conn, virConnectCloseFunc *cb)',
  virConnectDomainEventRegisterAny: 'int virConnectDomainEventRegisterAny(virConnect *conn, virDomain *dom, int eventID, void *cb, void *opaque, void *freecb)',
  virConnectDomainEventDeregisterAny: 'int virConnectDomainEventDeregisterAny(virConnect *conn, int callbackID)',
  virConnectListAllDomains: 'int virConnectListAllDomains(virConnect *conn, _Out_ void **domains, unsigned int flags)',
  virDomainDefineXMLFlags: 'virDomain *virDomainDefineXMLFlags(virConnect *conn, const char *xml, unsigned int flags)',
  virDomainLookupByName: 'virDomain *virDomainLookupByName(virConnect *conn, const char *name)',
  virDomainFree: 'int virDomainFree(virDomain *domain)',
  virDomainGetName: 'const char *virDomainGetName(virDomain *domain)',
  virDomainCreate: 'int virDomainCreate(virDomain *domain)',
  virDomainShutdown: 'int virDomainShutdown(virDomain *domain)',
  virDomainDestroy: 'int virDomainDestroy(virDomain *domain)',
  virDomainUndefineFlags: 'int virDomainUndefineFlags(virDomain *domain, unsigned int flags)',
  virDomainGetState: 'int virDomainGetState(virDomain *domain, _Out_ int *state, _Out_ int *reason, unsigned int flags)',
  virDomainGetMetadata: 'char *! virDomainGetMetadata(virDomain *domain, int type, const char *uri, unsigned int flags)',
  virDomainGetXMLDesc: 'char *! virDomainGetXMLDesc(virDomain *domain, unsigned int flags)',
  virDomainInterfaceAddresses: 'int virDomainInterfaceAddresses(virDomain *dom, _Out_ void **ifaces, unsigned int source, unsigned int flags)',
  virDomainInterfaceFree: 'void virDomainInterfaceFree(void *iface)',
} as const;

type Bindings = { -readonly [K in keyof typeof SYMBOLS]: AnyFn };

const loaded = new Map<string, Bindings>();

/**
 * Loads libvirt and binds every symbol in SYMBOLS. Throws KILN_LIBVIRT naming the library or the
 * missing symbol. `library` is only overridden by tests (a missing file, a library lacking symbols).
 */
export function loadLibvirt(library: string = DEFAULT_LIBRARY): Bindings {
  const cached = loaded.get(library);
  if (cached) return cached;
  let lib: LibraryHandle;
  try {
    lib = koffi.load(library);
  } catch (e) {
    throw new KilnError('KILN_LIBVIRT', `cannot load ${library} (install libvirt0, run scripts/setup): ${(e as Error).message}`, { library });
  }
  const out: Partial<Bindings> = {};
  for (const [symbol, signature] of Object.entries(SYMBOLS)) {
    try {
      out[symbol as keyof Bindings] = lib.func(signature) as unknown as AnyFn;
    } catch (e) {
      throw new KilnError('KILN_LIBVIRT', `${library} lacks symbol ${symbol}: ${(e as Error).message}`, { library, symbol });
    }
  }
  const b = out as Bindings;
  if (b.virInitialize() < 0) throw new KilnError('KILN_LIBVIRT', `virInitialize failed in ${library}`, { library, symbol: 'virInitialize' });
  loaded.set(library, b);
  return b;
}

// ---- process-global native state: callback trampolines, error slots, event loop ----

interface Slot { error?: LibvirtErrorInfo }

class NativeRuntime {
  /** Connection id -> connection, so callbacks (which only carry an opaque id) find their owner. */
  readonly connections = new Map<number, LibvirtConnection>();
  /** Errors dispatched without a connection: a failed virConnectOpen (opens are serialized). */
  readonly globalSlot: Slot = {};
  /** Errors raised by synchronous calls on the JS thread (never interleaved with anything). */
  readonly syncSlot: Slot = {};
  syncDepth = 0;
  nextId = 1;
  openChain: Promise<unknown> = Promise.resolve();
  strayErrors: LibvirtErrorInfo[] = [];

  readonly errorCb: Ptr;
  readonly lifecycleCb: Ptr;
  readonly closeCb: Ptr;
  readonly timeoutCb: Ptr;

  // event loop
  private loopUsers = 0;
  private loopRunning: Promise<void> | undefined;
  private wakeTimer = -1;
  loopIterations = 0;

  constructor(readonly b: Bindings) {
    this.errorCb = koffi.register((userData: Ptr | null, err: Ptr) => this.onError(userData, err), koffi.pointer(T.errorFunc));
    this.lifecycleCb = koffi.register(
      (_conn: Ptr, dom: Ptr, event: number, detail: number, opaque: Ptr | null) => {
        const c = opaque === null ? undefined : this.connections.get(Number(opaque));
        if (c) {
          const name = this.sync(() => b.virDomainGetName(dom) as string | null);
          if (name) c.dispatchLifecycle(name, event, detail);
        }
        return 0;
      },
      koffi.pointer(T.lifecycleFunc),
    );
    this.closeCb = koffi.register(
      (_conn: Ptr, reason: number, opaque: Ptr | null) => {
        const c = opaque === null ? undefined : this.connections.get(Number(opaque));
        c?.markClosed(VIR_CONNECT_CLOSE_REASON[reason] ?? `reason ${reason}`);
      },
      koffi.pointer(T.closeFunc),
    );
    // Fires only when we wake the loop to stop it; puts itself back to sleep.
    this.timeoutCb = koffi.register(
      (timer: number) => this.sync(() => b.virEventUpdateTimeout(timer, -1)),
      koffi.pointer(T.timeoutFunc),
    );
    b.virSetErrorFunc(null, this.errorCb);
    // Must precede every virConnectOpen for keepalive and close callbacks to work.
    if (b.virEventRegisterDefaultImpl() < 0) throw new KilnError('KILN_LIBVIRT', 'virEventRegisterDefaultImpl failed', { symbol: 'virEventRegisterDefaultImpl' });
  }

  sync<R>(fn: () => R): R {
    this.syncDepth++;
    try {
      return fn();
    } finally {
      this.syncDepth--;
    }
  }

  private onError(userData: Ptr | null, errPtr: Ptr): void {
    let info: LibvirtErrorInfo;
    try {
      const e = koffi.decode(errPtr, T.virError) as { code: number; domain: number; message: string | null; level: number };
      info = { code: e.code, domain: e.domain, message: e.message ?? `libvirt error ${e.code}`, level: e.level };
    } catch {
      return;
    }
    if (this.syncDepth > 0) { this.syncSlot.error = info; return; }
    if (userData === null) { this.globalSlot.error = info; return; }
    const c = this.connections.get(Number(userData));
    if (c) c.slot.error = info;
    else this.strayErrors.push(info);
  }

  /** Runs virEventRunDefaultImpl on a pool thread while at least one connection is open. */
  acquireLoop(): void {
    this.loopUsers++;
    if (this.wakeTimer < 0) {
      this.wakeTimer = this.b.virEventAddTimeout(-1, this.timeoutCb, null, null) as number;
      if (this.wakeTimer < 0) throw new KilnError('KILN_LIBVIRT', 'virEventAddTimeout failed', { symbol: 'virEventAddTimeout' });
    }
    if (this.loopRunning) return;
    this.loopRunning = (async () => {
      while (this.loopUsers > 0) {
        const rc = await asyncCall<number>(this.b.virEventRunDefaultImpl, []);
        this.loopIterations++;
        if (rc < 0) await new Promise((r) => setTimeout(r, 100)); // never spin on a broken loop
      }
    })().finally(() => { this.loopRunning = undefined; });
  }

  /** The last user wakes the loop (timer fires at once) so its pool thread is returned. */
  async releaseLoop(): Promise<void> {
    this.loopUsers = Math.max(0, this.loopUsers - 1);
    if (this.loopUsers > 0 || !this.loopRunning) return;
    this.b.virEventUpdateTimeout(this.wakeTimer, 0);
    await this.loopRunning;
  }

  get loopActive(): boolean {
    return this.loopRunning !== undefined;
  }
}

const runtimes = new Map<string, NativeRuntime>();

function runtime(library: string): NativeRuntime {
  let r = runtimes.get(library);
  if (!r) {
    r = new NativeRuntime(loadLibvirt(library));
    runtimes.set(library, r);
  }
  return r;
}

const PTR_SIZE = koffi.sizeof('void *');
const ADDR_SIZE = koffi.sizeof(T.virDomainIPAddress);

/** Reads n pointers from a C array without creating a koffi type per call. */
function decodePointerArray(arrayPtr: Ptr, n: number): Ptr[] {
  const out: Ptr[] = [];
  for (let i = 0; i < n; i++) out.push(koffi.decode(arrayPtr, i * PTR_SIZE, 'void *') as Ptr);
  return out;
}

function asyncCall<R>(fn: AnyFn, args: unknown[]): Promise<R> {
  return new Promise<R>((resolve, reject) => {
    fn.async(...args, (err: unknown, res: R) => (err ? reject(err) : resolve(res)));
  });
}

/** The error a failed libvirt call turns into: KILN_LIBVIRT with libvirt's code, domain and message. */
export function libvirtError(symbol: string, info: LibvirtErrorInfo | undefined, extra: Record<string, unknown> = {}): KilnError {
  const message = info?.message ?? 'unknown libvirt error (no error reported)';
  return new KilnError('KILN_LIBVIRT', `${symbol}: ${message}`, {
    symbol,
    libvirtCode: info?.code ?? -1,
    libvirtDomain: info?.domain ?? -1,
    libvirtMessage: message,
    ...extra,
  });
}

export function libvirtCode(e: unknown): number | undefined {
  if (e instanceof KilnError && e.code === 'KILN_LIBVIRT' && typeof e.details.libvirtCode === 'number') return e.details.libvirtCode;
  return undefined;
}

export interface LifecycleEvent {
  name: string;
  event: string;
  detail: number;
}

export interface InterfaceAddresses {
  name: string;
  hwaddr: string | null;
  addresses: Array<{ type: 'ipv4' | 'ipv6'; addr: string; prefix: number }>;
}

export interface OpenOptions {
  /** Test hook: another library path (a missing one, or one lacking symbols). */
  library?: string;
  /** Seconds between keepalive probes on remote connections (0 disables). */
  keepaliveInterval?: number;
  keepaliveCount?: number;
}

/**
 * One libvirt connection. All calls through it are serialized (see the file comment for why),
 * domain handles are looked up, used and freed inside one method, and close() frees the
 * connection exactly once. After the close callback reports the connection gone (libvirtd
 * restarted, keepalive timeout) `closed` is set and every call fails fast; the owner reconnects.
 */
export class LibvirtConnection {
  readonly slot: Slot = {};
  private chain: Promise<unknown> = Promise.resolve();
  private ptr: Ptr | null;
  private closing: Promise<void> | undefined;
  private lifecycleId = -1;
  private closeRegistered = false;
  private lifecycleListener: ((e: LifecycleEvent) => void) | undefined;
  private closedListener: ((reason: string) => void) | undefined;
  /** Set when libvirt reported the connection closed (close callback) or it was closed by us. */
  closedReason: string | undefined;

  private constructor(private readonly rt: NativeRuntime, readonly uri: string, readonly id: number, ptr: Ptr) {
    this.ptr = ptr;
  }

  static async open(uri: string, options: OpenOptions = {}): Promise<LibvirtConnection> {
    const rt = runtime(options.library ?? DEFAULT_LIBRARY);
    const b = rt.b;
    // Serialized with every other open: a connection-less error can only belong to this one.
    const opened = rt.openChain.then(async () => {
      rt.globalSlot.error = undefined;
      const ptr = await asyncCall<Ptr | null>(b.virConnectOpen, [uri]);
      if (!ptr) throw libvirtError('virConnectOpen', rt.globalSlot.error, { uri });
      return ptr;
    });
    rt.openChain = opened.catch(() => undefined);
    const ptr = await opened;
    const id = rt.nextId++;
    const conn = new LibvirtConnection(rt, uri, id, ptr);
    rt.connections.set(id, conn);
    rt.sync(() => b.virConnSetErrorFunc(ptr, BigInt(id), rt.errorCb));
    rt.acquireLoop();
    try {
      if (await conn.call('virConnectRegisterCloseCallback', [rt.closeCb, BigInt(id), null], (r: number) => r >= 0, { tolerate: true })) conn.closeRegistered = true;
      const interval = options.keepaliveInterval ?? 5;
      if (interval > 0) await conn.call('virConnectSetKeepAlive', [interval, options.keepaliveCount ?? 3], (r: number) => r >= 0, { tolerate: true });
    } catch (e) {
      await conn.close();
      throw e;
    }
    return conn;
  }

  get isOpen(): boolean {
    return this.ptr !== null && this.closedReason === undefined;
  }

  /** Number of event-loop iterations so far (tests prove events flowed through the loop). */
  get eventLoopIterations(): number {
    return this.rt.loopIterations;
  }

  onClosed(listener: (reason: string) => void): void {
    this.closedListener = listener;
  }

  markClosed(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    this.closedListener?.(reason);
  }

  dispatchLifecycle(name: string, event: number, detail: number): void {
    const listener = this.lifecycleListener;
    if (!listener) return;
    const e: LifecycleEvent = { name, event: VIR_DOMAIN_EVENT[event] ?? `event-${event}`, detail };
    // Deliver after the native callback returned: a listener must never run inside libvirt's dispatch.
    setImmediate(() => {
      try { listener(e); } catch { /* listeners own their errors */ }
    });
  }

  /**
   * Runs one libvirt call on the pool, serialized on this connection, and turns a failure
   * (judged by `ok` on the result) into KILN_LIBVIRT with the error its handler captured.
   * With `tolerate`, a failure resolves to undefined instead (the error is still consumed).
   */
  private call<R>(symbol: keyof Bindings, args: unknown[], ok: (r: R) => boolean, o?: { tolerate?: false; withConn?: boolean }): Promise<R>;
  private call<R>(symbol: keyof Bindings, args: unknown[], ok: (r: R) => boolean, o: { tolerate: true; withConn?: boolean }): Promise<R | undefined>;
  private call<R>(symbol: keyof Bindings, args: unknown[], ok: (r: R) => boolean, o: { tolerate?: boolean; withConn?: boolean } = {}): Promise<R | undefined> {
    const run = async (): Promise<R | undefined> => {
      if (this.ptr === null) throw new KilnError('KILN_LIBVIRT', `${symbol}: connection to ${this.uri} is closed`, { symbol, uri: this.uri, libvirtCode: VIR_ERR.NO_CONNECT });
      const fullArgs = o.withConn === false ? args : [this.ptr, ...args];
      this.slot.error = undefined;
      const result = await asyncCall<R>(this.rt.b[symbol], fullArgs);
      const error = this.slot.error;
      this.slot.error = undefined;
      if (ok(result)) return result;
      if (o.tolerate) return undefined;
      throw libvirtError(symbol, error, { uri: this.uri });
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }

  private failIfDead(symbol: string): void {
    if (this.closedReason !== undefined) {
      throw new KilnError('KILN_LIBVIRT', `${symbol}: connection to ${this.uri} was closed (${this.closedReason})`, { symbol, uri: this.uri, libvirtCode: VIR_ERR.NO_CONNECT, closedReason: this.closedReason });
    }
  }

  /** Looks the domain up, runs fn with its handle, frees the handle exactly once. */
  private async withDomain<R>(name: string, fn: (dom: Ptr) => Promise<R>): Promise<R> {
    this.failIfDead('virDomainLookupByName');
    const dom = await this.call<Ptr | null>('virDomainLookupByName', [name], (r) => r !== null && r !== 0n);
    try {
      return await fn(dom as Ptr);
    } finally {
      await this.call<number>('virDomainFree', [dom], (r) => r === 0, { tolerate: true, withConn: false });
    }
  }

  private domCall<R>(dom: Ptr, symbol: keyof Bindings, args: unknown[], ok: (r: R) => boolean): Promise<R> {
    return this.call<R>(symbol, [dom, ...args], ok, { withConn: false });
  }

  async isAlive(): Promise<boolean> {
    if (!this.isOpen) return false;
    const r = await this.call<number>('virConnectIsAlive', [], (r) => r >= 0, { tolerate: true });
    return r === 1;
  }

  async libVersion(): Promise<string> {
    this.failIfDead('virConnectGetLibVersion');
    const out: [number | bigint] = [0];
    await this.call<number>('virConnectGetLibVersion', [out], (r) => r === 0);
    const v = Number(out[0]);
    return `${Math.floor(v / 1_000_000)}.${Math.floor(v / 1000) % 1000}.${v % 1000}`;
  }

  async defineXML(xml: string): Promise<void> {
    this.failIfDead('virDomainDefineXMLFlags');
    const dom = await this.call<Ptr | null>('virDomainDefineXMLFlags', [xml, 0], (r) => r !== null && r !== 0n);
    await this.call<number>('virDomainFree', [dom], (r) => r === 0, { tolerate: true, withConn: false });
  }

  create(name: string): Promise<void> {
    return this.withDomain(name, async (d) => { await this.domCall<number>(d, 'virDomainCreate', [], (r) => r === 0); });
  }

  shutdown(name: string): Promise<void> {
    return this.withDomain(name, async (d) => { await this.domCall<number>(d, 'virDomainShutdown', [], (r) => r === 0); });
  }

  destroy(name: string): Promise<void> {
    return this.withDomain(name, async (d) => { await this.domCall<number>(d, 'virDomainDestroy', [], (r) => r === 0); });
  }

  /**
   * Undefines with managed-save, snapshot, checkpoint metadata and NVRAM removal. Drivers that
   * refuse some of those flags (the test driver) are retried with the ones every driver takes.
   */
  undefine(name: string): Promise<void> {
    return this.withDomain(name, async (d) => {
      const full = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | VIR_DOMAIN_UNDEFINE_NVRAM | VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA;
      try {
        await this.domCall<number>(d, 'virDomainUndefineFlags', [full], (r) => r === 0);
      } catch (e) {
        if (libvirtCode(e) !== VIR_ERR.INVALID_ARG && libvirtCode(e) !== VIR_ERR.NO_SUPPORT) throw e;
        await this.domCall<number>(d, 'virDomainUndefineFlags', [VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA], (r) => r === 0);
      }
    });
  }

  state(name: string): Promise<{ state: NativeDomainState; reason: number }> {
    return this.withDomain(name, (d) => this.stateOf(d));
  }

  private async stateOf(d: Ptr): Promise<{ state: NativeDomainState; reason: number }> {
    const state: [number] = [0];
    const reason: [number] = [0];
    await this.domCall<number>(d, 'virDomainGetState', [state, reason, 0], (r) => r === 0);
    return { state: VIR_DOMAIN_STATE[state[0]] ?? 'nostate', reason: reason[0] };
  }

  /** The metadata element in namespace `uri`, or null when the domain has none. */
  metadata(name: string, uri: string): Promise<string | null> {
    return this.withDomain(name, (d) => this.metadataOf(d, uri));
  }

  private async metadataOf(d: Ptr, uri: string): Promise<string | null> {
    try {
      return await this.domCall<string | null>(d, 'virDomainGetMetadata', [VIR_DOMAIN_METADATA_ELEMENT, uri, 0], (r) => r !== null);
    } catch (e) {
      if (libvirtCode(e) === VIR_ERR.NO_DOMAIN_METADATA) return null;
      throw e;
    }
  }

  xmlDesc(name: string): Promise<string> {
    return this.withDomain(name, (d) => this.domCall<string>(d, 'virDomainGetXMLDesc', [0], (r) => r !== null));
  }

  /**
   * Every domain with its state and its metadata element in namespace `uri` (null if none).
   * The array and each handle in it are freed here, also when a call in between fails.
   */
  async listAll(uri: string): Promise<Array<{ name: string; state: NativeDomainState; reason: number; metadata: string | null }>> {
    this.failIfDead('virConnectListAllDomains');
    const out: [Ptr | null] = [null];
    const n = await this.call<number>('virConnectListAllDomains', [out, 0], (r) => r >= 0);
    const arrayPtr = out[0];
    if (!arrayPtr) return [];
    const handles = decodePointerArray(arrayPtr, n);
    const result: Array<{ name: string; state: NativeDomainState; reason: number; metadata: string | null }> = [];
    try {
      for (const d of handles) {
        const name = this.rt.sync(() => this.rt.b.virDomainGetName(d) as string | null);
        if (!name) continue;
        try {
          const st = await this.stateOf(d);
          const metadata = await this.metadataOf(d, uri);
          result.push({ name, ...st, metadata });
        } catch (e) {
          // Undefined between the listing and the query: not an error for a listing.
          if (libvirtCode(e) !== VIR_ERR.NO_DOMAIN) throw e;
        }
      }
    } finally {
      for (const d of handles) await this.call<number>('virDomainFree', [d], (r) => r === 0, { tolerate: true, withConn: false });
      koffi.free(arrayPtr);
    }
    return result;
  }

  /** Addresses from the DHCP leases of libvirt networks (none for user-mode networking). */
  interfaceAddresses(name: string): Promise<InterfaceAddresses[]> {
    return this.withDomain(name, async (d) => {
      const out: [Ptr | null] = [null];
      const n = await this.domCall<number>(d, 'virDomainInterfaceAddresses', [out, VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0], (r) => r >= 0);
      const arrayPtr = out[0];
      if (!arrayPtr) return [];
      const ifaces = decodePointerArray(arrayPtr, n);
      const result: InterfaceAddresses[] = [];
      try {
        for (const ip of ifaces) {
          const iface = koffi.decode(ip, T.virDomainInterface) as { name: string; hwaddr: string | null; naddrs: number; addrs: Ptr | null };
          const addrs: Array<{ type: number; addr: string; prefix: number }> = [];
          for (let i = 0; iface.addrs && i < iface.naddrs; i++) addrs.push(koffi.decode(iface.addrs, i * ADDR_SIZE, T.virDomainIPAddress));
          result.push({
            name: iface.name,
            hwaddr: iface.hwaddr,
            addresses: addrs.map((a) => ({ type: a.type === 1 ? 'ipv6' : 'ipv4', addr: a.addr, prefix: a.prefix })),
          });
        }
      } finally {
        for (const ip of ifaces) await this.call<void>('virDomainInterfaceFree', [ip], () => true, { withConn: false });
        koffi.free(arrayPtr);
      }
      return result;
    });
  }

  /**
   * Registers the one lifecycle-event callback of this connection (events for every domain).
   * Returns false when the driver has no event support (the caller polls instead).
   */
  async subscribeLifecycle(listener: (e: LifecycleEvent) => void): Promise<boolean> {
    this.failIfDead('virConnectDomainEventRegisterAny');
    this.lifecycleListener = listener;
    if (this.lifecycleId >= 0) return true;
    try {
      this.lifecycleId = await this.call<number>('virConnectDomainEventRegisterAny', [null, VIR_DOMAIN_EVENT_ID_LIFECYCLE, this.rt.lifecycleCb, BigInt(this.id), null], (r) => r >= 0);
      return true;
    } catch (e) {
      this.lifecycleListener = undefined;
      if (libvirtCode(e) === VIR_ERR.NO_SUPPORT) return false;
      throw e;
    }
  }

  /** Deregisters callbacks and closes the connection; idempotent, frees exactly once. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const alive = this.closedReason === undefined;
      if (this.lifecycleId >= 0) {
        await this.call<number>('virConnectDomainEventDeregisterAny', [this.lifecycleId], (r) => r >= 0, { tolerate: true });
        this.lifecycleId = -1;
      }
      if (this.closeRegistered) {
        await this.call<number>('virConnectUnregisterCloseCallback', [this.rt.closeCb], (r) => r >= 0, { tolerate: true });
        this.closeRegistered = false;
      }
      await this.call<number>('virConnectClose', [], (r) => r >= 0, { tolerate: true });
      this.ptr = null;
      if (alive) this.closedReason = 'client';
      this.lifecycleListener = undefined;
      this.rt.connections.delete(this.id);
      await this.rt.releaseLoop();
    })();
    return this.closing;
  }
}

/** libvirt's own version (no connection needed), e.g. "9.0.0". */
export function libvirtVersion(library: string = DEFAULT_LIBRARY): string {
  const b = runtime(library).b;
  const v: [number | bigint] = [0];
  const t: [number | bigint] = [0];
  if (b.virGetVersion(v, null, t) < 0) throw new KilnError('KILN_LIBVIRT', 'virGetVersion failed', { symbol: 'virGetVersion' });
  const n = Number(v[0]);
  return `${Math.floor(n / 1_000_000)}.${Math.floor(n / 1000) % 1000}.${n % 1000}`;
}

/** For tests: whether the default event loop currently occupies a pool thread. */
export function eventLoopActive(library: string = DEFAULT_LIBRARY): boolean {
  return runtimes.get(library)?.loopActive ?? false;
}
