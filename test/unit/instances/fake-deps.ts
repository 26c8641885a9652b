// Fakes behind InstanceService's dependency interfaces (agent/instances/deps.ts), for unit tests
// only. Semantics: images are "fetched" instantly (digest = sha256 of the URL) and references are
// a set per digest; disks and seeds are real small files; the hypervisor keeps domains in a map
// (XML is the JSON of the DomainSpec); every method can be made to fail once via failOnce.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import type { DiskJson, ImageJson } from '../../../agent/api/protocol.js';
import { KilnError } from '../../../agent/errors.js';
import { silentLogger } from '../../../agent/log.js';
import { MetricsRegistry } from '../../../agent/metrics.js';
import type {
  DiskMaker, DiskRequestLike, DomainSpecLike, DomainStateLike, FetchRequestLike, HypervisorLike, ImageStore, SeedSpecLike, SeedWriter,
} from '../../../agent/instances/deps.js';
import { InstanceService, type InstanceServiceDeps, type ServiceConfig } from '../../../agent/instances/service.js';

class Faults {
  private readonly once = new Map<string, KilnError>();
  failOnce(method: string, err: KilnError = new KilnError('KILN_INTERNAL', `injected failure in ${method}`)): void {
    this.once.set(method, err);
  }
  check(method: string): void {
    const e = this.once.get(method);
    if (e) {
      this.once.delete(method);
      throw e;
    }
  }
}

export class FakeImages extends Faults implements ImageStore {
  readonly images = new Map<string, ImageJson>();
  readonly refs = new Map<string, Set<string>>();
  ensures = 0;
  virtualSize = 1 << 30;
  minRam = 0;
  async ensure(req: FetchRequestLike): Promise<ImageJson> {
    this.check('ensure');
    this.ensures++;
    const digest = 'sha256:' + createHash('sha256').update(req.url).digest('hex');
    let img = this.images.get(digest);
    if (!img) {
      img = { digest, format: 'qcow2', virtualSize: this.virtualSize, actualSize: 1000, path: `/images/${digest}/disk`, sources: [req.url], minDisk: req.minDisk ?? 0, minRam: req.minRam ?? this.minRam, inUseBy: [] };
      this.images.set(digest, img);
    }
    return this.json(digest);
  }
  async get(ref: string): Promise<ImageJson> {
    const hits = [...this.images.keys()].filter((d) => d.startsWith(ref));
    if (hits.length !== 1) throw new KilnError('KILN_NOT_FOUND', `no image ${ref}`);
    return this.json(hits[0]!);
  }
  async acquire(digest: string, holder: string): Promise<ImageJson> {
    this.check('acquire');
    if (!this.images.has(digest)) throw new KilnError('KILN_NOT_FOUND', `no image ${digest}`);
    if (!this.refs.has(digest)) this.refs.set(digest, new Set());
    this.refs.get(digest)!.add(holder);
    return this.json(digest);
  }
  async release(digest: string, holder: string): Promise<void> {
    this.check('release');
    this.refs.get(digest)?.delete(holder);
  }
  async list(): Promise<ImageJson[]> {
    return [...this.images.keys()].map((d) => this.json(d));
  }
  holders(): string[] {
    return [...this.refs.values()].flatMap((s) => [...s]).sort();
  }
  private json(digest: string): ImageJson {
    const img = this.images.get(digest)!;
    return { ...img, minRam: Math.max(img.minRam, this.minRam), inUseBy: [...(this.refs.get(digest) ?? [])] };
  }
}

export class FakeDisks extends Faults implements DiskMaker {
  readonly live = new Set<string>();
  active = 0;
  delayMs = 0;
  async create(req: DiskRequestLike): Promise<DiskJson> {
    this.active++;
    try {
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
      this.check('create');
      if (req.mode === 'volume') {
        this.live.add(req.target);
        return { device: req.target, format: 'raw', virtualSize: req.sizeBytes ?? req.image.virtualSize, mode: 'volume' };
      }
      await writeFile(req.target, 'disk', { mode: 0o600 });
      this.live.add(req.target);
      return { path: req.target, format: 'qcow2', virtualSize: req.sizeBytes ?? req.image.virtualSize, mode: req.mode };
    } finally {
      this.active--;
    }
  }
  async remove(disk: DiskJson): Promise<void> {
    this.check('remove');
    if (disk.path) await rm(disk.path, { force: true });
    this.live.delete(disk.path ?? disk.device!);
  }
}

export class FakeSeed extends Faults implements SeedWriter {
  last: SeedSpecLike | undefined;
  build(spec: SeedSpecLike): Buffer {
    this.check('build');
    this.last = spec;
    return Buffer.from(JSON.stringify({ ...spec, userData: spec.userData?.toString() }));
  }
  async write(path: string, iso: Buffer): Promise<void> {
    this.check('write');
    await writeFile(path, iso, { mode: 0o600 });
  }
}

interface FakeDomain {
  spec: DomainSpecLike;
  state: DomainStateLike;
}

export class StubHypervisor extends Faults implements HypervisorLike {
  readonly uri = 'stub:///';
  readonly domains = new Map<string, FakeDomain>();
  /** State a domain reaches on start (tests make it crash). */
  startState: DomainStateLike = 'running';
  async define(xml: string): Promise<void> {
    this.check('define');
    const spec = JSON.parse(xml) as DomainSpecLike;
    const existing = this.domains.get(spec.name);
    if (existing && existing.spec.uuid !== spec.uuid) throw new KilnError('KILN_LIBVIRT', `domain ${spec.name} already exists with another uuid`);
    this.domains.set(spec.name, { spec, state: existing?.state ?? 'shutoff' });
  }
  async start(name: string): Promise<void> {
    this.check('start');
    this.must(name).state = this.startState;
  }
  async shutdown(name: string): Promise<void> {
    this.must(name).state = 'shutoff';
  }
  async destroy(name: string): Promise<void> {
    this.check('destroy');
    const d = this.domains.get(name);
    if (d) d.state = 'shutoff';
  }
  async undefine(name: string): Promise<void> {
    this.domains.delete(name);
  }
  async state(name: string): Promise<{ state: DomainStateLike; reason: number }> {
    return { state: this.must(name).state, reason: 0 };
  }
  async listKiln() {
    return [...this.domains.values()].map((d) => ({ name: d.spec.name, state: d.state, metadata: d.spec.metadata }));
  }
  async interfaceAddresses(): Promise<string[]> {
    return ['192.168.122.10'];
  }
  private must(name: string): FakeDomain {
    const d = this.domains.get(name);
    if (!d) throw new KilnError('KILN_NOT_FOUND', `no domain ${name}`);
    return d;
  }
}

export const TEST_CONFIG: ServiceConfig = {
  defaultMemory: 256 * 1024 * 1024, defaultVcpus: 1, defaultNetwork: 'user', diskMode: 'overlay', flatFormat: 'qcow2',
  diskConcurrency: 2, sshPortBase: 40200, shutdownGrace: 1000, readyTimeout: 2000, domainType: 'qemu',
};

export interface Rig {
  dir: string;
  images: FakeImages;
  disks: FakeDisks;
  seed: FakeSeed;
  hv: StubHypervisor;
  metrics: MetricsRegistry;
  waits: Array<{ host: string; port: number; username: string }>;
  deps: InstanceServiceDeps;
  service: InstanceService;
  /** A new service over the same state and fakes (a kilnd restart). */
  restart(): InstanceService;
}

export function rig(t: Test, config: Partial<ServiceConfig> = {}): Rig {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-inst-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const images = new FakeImages();
  const disks = new FakeDisks();
  const seed = new FakeSeed();
  const hv = new StubHypervisor();
  const metrics = new MetricsRegistry();
  const waits: Rig['waits'] = [];
  const deps: InstanceServiceDeps = {
    config: { ...TEST_CONFIG, ...config }, instancesDir: dir, log: silentLogger(), metrics, images, disks, seed, hypervisor: hv,
    checkSizes: (image, o) => {
      if (o.diskBytes < Math.max(image.virtualSize, image.minDisk)) throw new KilnError('KILN_DISK_TOO_SMALL', 'disk too small');
      if (o.memoryBytes !== undefined && o.memoryBytes < image.minRam) throw new KilnError('KILN_MEMORY_TOO_SMALL', 'memory too small');
    },
    domainXml: (spec) => JSON.stringify(spec),
    domainType: () => 'qemu',
    waitForCloudInit: async (target) => {
      waits.push({ host: target.host, port: target.port, username: target.username });
      // Like readiness: root is redirected to the image's default user.
      return { status: 'done', detail: 'status: done', hostKey: 'ssh-ed25519 AAAA', username: target.username === 'root' ? 'debian' : target.username };
    },
    agentKeys: { publicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKILNKILNKILN kiln-agent', privateKey: Buffer.from('private') },
    kilnVersion: '0.0.0-test',
    portProbe: async () => true,
    pollMs: 5,
  };
  return { dir, images, disks, seed, hv, metrics, waits, deps, service: new InstanceService(deps), restart: () => new InstanceService(deps) };
}
