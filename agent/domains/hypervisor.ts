// Owns: the Hypervisor interface every caller (instances/, the daemon's status probe) programs
// against, the typed DomainSpec that domain XML is made from, and the domain state vocabulary.
// Must not: import native/ or koffi; implementations live in libvirt-hypervisor.ts (real) and
// fake-hypervisor.ts (in-memory, for unit tests).

export interface DomainSpec {
  name: string;
  uuid: string;
  domainType: 'kvm' | 'qemu';
  memoryBytes: number;
  vcpus: number;
  disk: { kind: 'file'; path: string; format: 'qcow2' | 'raw' } | { kind: 'block'; device: string };
  seed?: { path: string };
  consoleLogPath: string;
  network: { kind: 'user'; sshHostPort?: number } | { kind: 'network'; name: string } | { kind: 'bridge'; bridge: string };
  metadata: { instance: string; imageDigest: string; kilnVersion: string };
}

export type DomainState = 'running' | 'shutoff' | 'paused' | 'shutdown' | 'crashed' | 'pmsuspended' | 'blocked' | 'nostate';

/**
 * A lifecycle event. `event` is libvirt's event name (defined, undefined, started, suspended,
 * resumed, stopped, shutdown, pmsuspended, crashed); `state` is the state the event implies, and
 * 'nostate' for defined/undefined, which say nothing about it (ask state()).
 */
export interface LifecycleEvent {
  name: string;
  state: DomainState;
  event: string;
}

export interface Hypervisor {
  readonly uri: string;
  connect(): Promise<void>;
  close(): Promise<void>;
  isAlive(): Promise<boolean>;
  /** Defines (or redefines) a persistent domain from XML. */
  define(xml: string): Promise<void>;
  /** Starts a defined domain; a running one is left alone. KILN_NOT_FOUND when absent. */
  start(name: string): Promise<void>;
  /** ACPI shutdown, then destroy after graceMs. Resolves once the domain is off. */
  shutdown(name: string, graceMs: number): Promise<void>;
  /** Hard stop; tolerant of "not running" and "no such domain". */
  destroy(name: string): Promise<void>;
  /** Removes the definition with its managed save, snapshot metadata and NVRAM; tolerant of "no such domain". */
  undefine(name: string): Promise<void>;
  /** KILN_NOT_FOUND if absent. `reason` is libvirt's per-state reason number. */
  state(name: string): Promise<{ state: DomainState; reason: number }>;
  /** kiln's domains: the ones carrying kiln's metadata element. */
  listKiln(): Promise<Array<{ name: string; state: DomainState; metadata: DomainSpec['metadata'] }>>;
  /** IP addresses known to libvirt (DHCP leases); empty for user-mode networking. */
  interfaceAddresses(name: string): Promise<string[]>;
  /** Subscribes to lifecycle events of every domain; returns the unsubscribe function. */
  onLifecycle(cb: (e: LifecycleEvent) => void): () => void;
}

const EVENT_STATE: Record<string, DomainState> = {
  started: 'running',
  resumed: 'running',
  suspended: 'paused',
  stopped: 'shutoff',
  shutdown: 'shutdown',
  pmsuspended: 'pmsuspended',
  crashed: 'crashed',
};

/** The state a lifecycle event implies ('nostate' for defined/undefined). */
export function stateOfEvent(event: string): DomainState {
  return EVENT_STATE[event] ?? 'nostate';
}

/** The event name a polled state change corresponds to (the polling fallback's synthetic events). */
export function eventOfState(state: DomainState): string {
  switch (state) {
    case 'running': return 'started';
    case 'paused': return 'suspended';
    case 'shutoff': return 'stopped';
    case 'shutdown': return 'shutdown';
    case 'pmsuspended': return 'pmsuspended';
    case 'crashed': return 'crashed';
    default: return 'defined';
  }
}
