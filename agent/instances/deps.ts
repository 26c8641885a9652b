// Owns: the narrow views InstanceService has of the modules it combines (image cache, disks, seed,
// domains, readiness, agent keys). They mirror docs/interfaces.md structurally, so daemon.ts passes
// the real modules and unit tests pass fakes behind the same shapes.
// Must not: import those modules at run time (type imports only, so unit tests pass fakes) or
// hold state.
import type { DiskJson, ImageJson } from '../api/protocol.js';
import type { DomainSpec, DomainState, Hypervisor } from '../domains/hypervisor.js';

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

export type NetworkSpec = DomainSpec['network'];

/** agent/domains' spec and states, seen under the names the service uses. */
export type DomainSpecLike = DomainSpec;
export type DomainStateLike = DomainState;

/** The part of agent/domains Hypervisor (LibvirtHypervisor, FakeHypervisor) provisioning uses. */
export type HypervisorLike = Pick<Hypervisor, 'uri' | 'define' | 'start' | 'shutdown' | 'destroy' | 'undefine' | 'state' | 'listKiln' | 'interfaceAddresses'> &
  Partial<Pick<Hypervisor, 'onLifecycle'>>;

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
