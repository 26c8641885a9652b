// Owns: the narrow views InstanceService has of the modules it combines (image cache, disks, seed,
// domains, readiness, agent keys). They mirror docs/interfaces.md structurally, so daemon.ts passes
// the real modules and unit tests pass fakes behind the same shapes.
// Must not: import those modules (so the service builds and tests without them) or hold state.
import type { DiskJson, ImageJson } from '../api/protocol.js';

export type Progress = (e: { step: string; done?: number; total?: number; rate?: number; message?: string }) => void;

export interface FetchRequestLike {
  url: string;
  checksum?: string;
  diskFormat?: string;
  minDisk?: number;
  minRam?: number;
}

/** What provisioning needs of the image cache (agent/images/cache.ts ImageCache). */
export interface ImageStore {
  ensure(req: FetchRequestLike, progress?: Progress): Promise<ImageJson>;
  get(ref: string): Promise<ImageJson>;
  acquire(digest: string, holder: string): Promise<ImageJson>;
  release(digest: string, holder: string): Promise<void>;
  list(): Promise<ImageJson[]>;
}

export interface DiskRequestLike {
  target: string;
  image: ImageJson;
  sizeBytes?: number;
  mode: 'overlay' | 'flat' | 'volume';
  memoryBytes?: number;
}

/** agent/disks DiskService. */
export interface DiskMaker {
  create(req: DiskRequestLike, progress?: Progress): Promise<DiskJson>;
  remove(disk: DiskJson): Promise<void>;
}

export interface SeedSpecLike {
  format: 'nocloud' | 'configdrive';
  instanceId: string;
  hostname: string;
  userData?: Buffer;
  networkConfig?: Buffer;
  sshKeys: string[];
  createdAt: Date;
  uuid?: string;
}

/** agent/seed buildSeed + writeSeedFile, bound to the configured limits by the wiring. */
export interface SeedWriter {
  build(spec: SeedSpecLike): Buffer;
  write(path: string, iso: Buffer): Promise<void>;
}

export type NetworkSpec = { kind: 'user'; sshHostPort?: number } | { kind: 'network'; name: string } | { kind: 'bridge'; bridge: string };

export interface DomainSpecLike {
  name: string;
  uuid: string;
  domainType: 'kvm' | 'qemu';
  memoryBytes: number;
  vcpus: number;
  disk: { kind: 'file'; path: string; format: 'qcow2' | 'raw' } | { kind: 'block'; device: string };
  seed?: { path: string };
  consoleLogPath: string;
  network: NetworkSpec;
  metadata: { instance: string; imageDigest: string; kilnVersion: string };
}

export type DomainStateLike = 'running' | 'shutoff' | 'paused' | 'shutdown' | 'crashed' | 'pmsuspended' | 'blocked' | 'nostate';

/** agent/domains Hypervisor (LibvirtHypervisor, FakeHypervisor). */
export interface HypervisorLike {
  readonly uri: string;
  define(xml: string): Promise<void>;
  start(name: string): Promise<void>;
  shutdown(name: string, graceMs: number): Promise<void>;
  destroy(name: string): Promise<void>;
  undefine(name: string): Promise<void>;
  state(name: string): Promise<{ state: DomainStateLike; reason: number }>;
  listKiln(): Promise<Array<{ name: string; state: DomainStateLike; metadata: DomainSpecLike['metadata'] }>>;
  interfaceAddresses(name: string): Promise<string[]>;
  onLifecycle?(cb: (e: { name: string; state: DomainStateLike; event: string }) => void): () => void;
}

export interface SshTargetLike {
  host: string;
  port: number;
  username: string;
  privateKey: Buffer;
  knownHostKey?: string;
}

/** agent/readiness waitForCloudInit. */
export type WaitForCloudInit = (
  t: SshTargetLike,
  o: { timeoutMs: number; log: import('../log.js').Logger; consoleTail?: () => Promise<string> },
) => Promise<{ status: 'done'; detail: string; hostKey: string; username?: string }>;

/** kiln's own SSH key pair (agent/readiness AgentKeys), injected into every seed. */
export interface AgentKeysLike {
  publicKey: string;
  privateKey: Buffer;
}
