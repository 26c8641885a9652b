// Owns: provisioning and the lifecycle of instances: the one place that combines image cache,
// disks, seed, domains and readiness. provision = ensure image -> acquire reference -> disk ->
// seed -> define -> start -> wait; idempotent per name; a failure rolls back what that call
// created; operations on one name are serialized and disk-heavy steps are bounded; reconcile()
// brings records, libvirt's kiln domains and the cache's references back in line at start-up.
// Must not: see HTTP, parse JSON bodies, build libvirt XML or qemu-img argv itself (deps do).
import { randomUUID } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { DiskJson, ImageJson, InstanceJson } from '../api/protocol.js';
import type { KilnConfig } from '../config/schema.js';
import { KilnError, isKilnError, toKilnError } from '../errors.js';
import type { Logger } from '../log.js';
import type { MetricsRegistry } from '../metrics.js';
import type {
  AgentKeysLike, DiskMaker, DomainSpecLike, DomainStateLike, HypervisorLike, ImageStore, Progress, SeedWriter, WaitForCloudInit,
} from './deps.js';
import { NameLock, Semaphore } from './locks.js';
import { PortAllocator, type PortProbe } from './ports.js';
import {
  instanceDir, listInstanceDirs, makeInstanceDir, readRecord, removeInstanceDir, removeTrash, writeRecord, type InstanceRecord,
} from './record.js';
import { INSTANCE_NAME, checkInstanceName as checkName, fingerprint, networkText, resolveSpec, specDifferences, type ProvisionRequest } from './spec.js';

export type ServiceConfig = Pick<KilnConfig,
  'defaultMemory' | 'defaultVcpus' | 'defaultNetwork' | 'diskMode' | 'flatFormat' | 'diskConcurrency' | 'sshPortBase' |
  'shutdownGrace' | 'readyTimeout' | 'domainType'>;

export interface InstanceServiceDeps {
  config: ServiceConfig;
  /** <state>/instances */
  instancesDir: string;
  log: Logger;
  metrics: MetricsRegistry;
  images: ImageStore;
  disks: DiskMaker;
  /** disks/ checkSizes: KILN_DISK_TOO_SMALL / KILN_MEMORY_TOO_SMALL before any work. */
  checkSizes: (image: ImageJson, o: { diskBytes: number; memoryBytes?: number }) => void;
  seed: SeedWriter;
  domainXml: (spec: DomainSpecLike) => string;
  hypervisor: HypervisorLike;
  /** 'kvm' or 'qemu' for this host (config domainType, or hostDomainType() when auto). */
  domainType: () => 'kvm' | 'qemu';
  waitForCloudInit: WaitForCloudInit;
  agentKeys: AgentKeysLike;
  kilnVersion: string;
  /** Tests inject a probe; the default binds 127.0.0.1:port. */
  portProbe?: PortProbe;
  /** How often a 'running' wait polls the domain state. */
  pollMs?: number;
}

/** The instance document: DESIGN.md's shape plus a few fields operators find useful. */
export interface InstanceDetailJson extends InstanceJson {
  uuid: string;
  network: string;
  /** provisioning | ready | removing */
  phase: string;
  /** The guest user kiln logs in as (null when no SSH endpoint is known). */
  sshUser: string | null;
  /** The guest's SSH host key "TYPE BASE64", as seen by --wait ssh (null before). */
  sshHostKey: string | null;
}

export interface ProvisionResult {
  instance: InstanceDetailJson;
  /** false when the same spec was already provisioned (idempotent repeat). */
  created: boolean;
}

const STEP_NAMES = ['image', 'disk', 'seed', 'define', 'start', 'wait'] as const;
type Step = (typeof STEP_NAMES)[number];

export class InstanceService {
  private readonly log: Logger;
  private readonly names = new NameLock();
  private readonly diskSlots: Semaphore;
  private readonly ports: PortAllocator;
  /** Last known state per instance, for the instances-by-state gauge (collected synchronously). */
  private readonly states = new Map<string, string>();
  private readonly stepSeconds;
  private readonly provisionSeconds;
  private readonly provisions;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly deps: InstanceServiceDeps) {
    this.log = deps.log.child({ component: 'instances' });
    this.diskSlots = new Semaphore(deps.config.diskConcurrency);
    this.ports = new PortAllocator(deps.config.sshPortBase, 1000, deps.portProbe);
    this.stepSeconds = deps.metrics.histogram('kiln_provision_step_seconds', 'Provisioning step durations by step');
    this.provisionSeconds = deps.metrics.histogram('kiln_provision_seconds', 'Provisioning durations (request to ready) by result');
    this.provisions = deps.metrics.counter('kiln_provisions_total', 'Provisioning requests by result (created, existing, failed)');
    deps.metrics.gauge('kiln_instances', 'Instances by state', () => {
      const counts = new Map<string, number>();
      for (const s of this.states.values()) counts.set(s, (counts.get(s) ?? 0) + 1);
      return [...counts].map(([state, n]) => [{ state }, n]);
    });
  }

  /** Peak of concurrent disk-heavy steps seen (tests check the bound). */
  get diskPeak(): number {
    return this.diskSlots.peak;
  }

  // ---------------------------------------------------------------- provisioning

  async provision(req: ProvisionRequest, progress: Progress = () => undefined): Promise<ProvisionResult> {
    checkName(req.name);
    const spec = resolveSpec(req, this.deps.config);
    const print = fingerprint(spec);
    return this.names.with(req.name, async () => {
      const existing = await readRecord(this.deps.instancesDir, req.name);
      if (existing && existing.phase === 'ready') {
        if (existing.fingerprint !== print) {
          throw new KilnError('KILN_CONFLICT', `instance ${req.name} exists with a different spec`, {
            name: req.name, fields: specDifferences(existing.spec, spec),
          });
        }
        this.provisions.inc({ result: 'existing' });
        return { instance: await this.toJson(existing), created: false };
      }
      // A record left in another phase (a rollback that could not finish) is cleaned up first.
      if (existing) await this.teardown(existing, 'stale record before provisioning');
      const started = process.hrtime.bigint();
      try {
        const record = await this.create(req, spec, print, progress);
        this.provisions.inc({ result: 'created' });
        this.provisionSeconds.observe({ result: 'created' }, Number(process.hrtime.bigint() - started) / 1e9);
        return { instance: await this.toJson(record), created: true };
      } catch (e) {
        this.provisions.inc({ result: 'failed' });
        this.provisionSeconds.observe({ result: 'failed' }, Number(process.hrtime.bigint() - started) / 1e9);
        throw e;
      }
    });
  }

  private async create(req: ProvisionRequest, spec: InstanceRecord['spec'], print: string, progress: Progress): Promise<InstanceRecord> {
    const { deps } = this;
    const name = req.name;
    const now = new Date();
    const dir = await makeInstanceDir(deps.instancesDir, name);
    const record: InstanceRecord = {
      version: 1, name, uuid: randomUUID(), phase: 'provisioning', spec, fingerprint: print,
      wait: req.wait ?? 'running', sshUser: req.sshUser ?? 'root',
      image: null, disk: null, seed: null, domain: null, ssh: null, state: 'provisioning', ready: false,
      createdAt: now.toISOString(), updatedAt: now.toISOString(), steps: {},
    };
    // Written before anything is created: a crash from here on leaves a 'provisioning' record that
    // reconcile rolls back. Everything this call creates can be found without further writes:
    // files live in the folder, the domain carries kiln metadata naming the instance, and the
    // image reference is held under the instance's name. (Each write costs an fsync pair, so the
    // record is written twice per provisioning: here and when ready.)
    await writeRecord(deps.instancesDir, record);
    this.states.set(name, 'provisioning');
    let sshPort: number | undefined;
    const step = async <T>(stepName: Step, fn: () => Promise<T>): Promise<T> => {
      const t0 = process.hrtime.bigint();
      progress({ step: stepName, message: 'started' });
      const value = await fn();
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      record.steps[stepName] = Math.round(seconds * 1e6) / 1e6;
      this.stepSeconds.observe({ step: stepName }, seconds);
      progress({ step: stepName, message: 'done' });
      return value;
    };
    try {
      // 1. image: fetch or find it, then take the reference that keeps it from eviction.
      const image = await step('image', async () => {
        const img = spec.image.ref
          ? await deps.images.get(spec.image.ref)
          : await deps.images.ensure({
              url: spec.image.url!,
              ...(spec.image.checksum ? { checksum: spec.image.checksum } : {}),
              ...(spec.image.diskFormat ? { diskFormat: spec.image.diskFormat } : {}),
              ...(spec.image.minDisk !== null ? { minDisk: spec.image.minDisk } : {}),
              ...(spec.image.minRam !== null ? { minRam: spec.image.minRam } : {}),
            }, (e) => progress({ ...e, step: 'image' }));
        record.image = { digest: img.digest };
        return deps.images.acquire(img.digest, name);
      });
      if (spec.disk.mode !== 'volume') {
        deps.checkSizes(image, { diskBytes: spec.disk.sizeBytes ?? Math.max(image.virtualSize, image.minDisk), memoryBytes: spec.memory });
      } else if (image.minRam && spec.memory < image.minRam) {
        deps.checkSizes(image, { diskBytes: Number.MAX_SAFE_INTEGER, memoryBytes: spec.memory });
      }

      // 2. disk, bounded with the other disk-heavy work.
      const target = spec.disk.mode === 'volume' ? spec.disk.device! : join(dir, spec.disk.mode === 'flat' && deps.config.flatFormat === 'raw' ? 'disk.raw' : 'disk.qcow2');
      const disk = await step('disk', () => this.diskSlots.with(async () => {
        const d = await deps.disks.create({
          target, image, mode: spec.disk.mode, memoryBytes: spec.memory,
          ...(spec.disk.sizeBytes !== null ? { sizeBytes: spec.disk.sizeBytes } : {}),
        }, (e) => progress({ ...e, step: 'disk' }));
        record.disk = d;
        return d;
      }));

      // 3. seed: the user's keys plus kiln's own, so readiness can log in.
      const seedPath = join(dir, 'seed.iso');
      await step('seed', async () => {
        const userData = req.userData === undefined ? undefined : Buffer.from(req.userData);
        const networkConfig = req.networkConfig === undefined ? undefined : Buffer.from(req.networkConfig);
        const iso = deps.seed.build({
          format: spec.seed, instanceId: record.uuid, hostname: name, uuid: record.uuid,
          sshKeys: [...spec.sshKeys, deps.agentKeys.publicKey.trim()], createdAt: now,
          ...(userData ? { userData } : {}), ...(networkConfig ? { networkConfig } : {}),
        });
        record.seed = { path: seedPath, format: spec.seed };
        await deps.seed.write(seedPath, iso);
      });

      // 4. define.
      if (spec.network.kind === 'user') {
        const taken = await this.takenPorts(name);
        sshPort = await this.ports.reserve(taken);
      }
      const domain: DomainSpecLike = {
        name, uuid: record.uuid, domainType: deps.domainType(), memoryBytes: spec.memory, vcpus: spec.vcpus,
        disk: disk.device ? { kind: 'block', device: disk.device } : { kind: 'file', path: disk.path!, format: disk.format === 'raw' ? 'raw' : 'qcow2' },
        seed: { path: seedPath }, consoleLogPath: join(dir, 'console.log'),
        network: spec.network.kind === 'user' ? { kind: 'user', sshHostPort: sshPort! } : spec.network,
        metadata: { instance: name, imageDigest: image.digest, kilnVersion: deps.kilnVersion },
      };
      await step('define', async () => {
        const xml = deps.domainXml(domain);
        record.domain = domain;
        record.ssh = sshPort !== undefined ? { host: '127.0.0.1', port: sshPort } : null;
        await deps.hypervisor.define(xml);
      });

      // 5. start and 6. wait.
      await step('start', () => deps.hypervisor.start(name));
      record.state = 'running';
      this.states.set(name, 'running');
      await step('wait', () => this.waitReady(record));
      record.ready = true;
      record.phase = 'ready';
      record.state = await this.liveState(name);
      await this.save(record);
      this.states.set(name, record.state);
      this.log.info({ name, digest: image.digest, steps: record.steps }, 'instance provisioned');
      return record;
    } catch (error) {
      const err = toKilnError(error);
      this.log.warn({ name, code: err.code, err: error }, 'provisioning failed; rolling back');
      // The caller hears about the original failure; a rollback that could not finish leaves the
      // 'provisioning' record, which the next provisioning of this name or reconcile cleans up.
      await this.teardown(record, 'rollback').catch((e) => this.log.error({ name, err: e }, 'rollback incomplete'));
      throw err;
    } finally {
      if (sshPort !== undefined) this.ports.release(sshPort);
    }
  }

  private async waitReady(record: InstanceRecord): Promise<void> {
    const { deps } = this;
    if (record.wait === 'running') {
      const deadline = Date.now() + deps.config.readyTimeout;
      for (;;) {
        const { state } = await deps.hypervisor.state(record.name);
        if (state === 'running') return;
        if (state === 'shutoff' || state === 'crashed') {
          throw new KilnError('KILN_LIBVIRT', `instance ${record.name} stopped while starting (state ${state})`, { name: record.name, state });
        }
        if (Date.now() > deadline) throw new KilnError('KILN_TIMEOUT', `instance ${record.name} did not reach running`, { name: record.name, state });
        await new Promise((r) => setTimeout(r, deps.pollMs ?? 200));
      }
    }
    const target = await this.sshTarget(record);
    const consoleTail = async () => {
      const text = await readFile(record.domain!.consoleLogPath, 'utf8').catch(() => '');
      return text.slice(-4000);
    };
    const done = await deps.waitForCloudInit(
      { host: target.host, port: target.port, username: record.sshUser, privateKey: deps.agentKeys.privateKey },
      { timeoutMs: deps.config.readyTimeout, log: this.log, consoleTail },
    );
    // The guest's host key as first seen (readiness pins it for the rest of the wait), and the
    // user that worked (readiness follows "Please login as the user X" from root).
    record.sshHostKey = done.hostKey;
    if (done.username) record.sshUser = done.username;
  }

  private async sshTarget(record: InstanceRecord): Promise<{ host: string; port: number }> {
    if (record.ssh) return record.ssh;
    // Networks other than user mode: wait for the guest's address (DHCP lease or agent).
    const deadline = Date.now() + this.deps.config.readyTimeout;
    for (;;) {
      const addrs = await this.deps.hypervisor.interfaceAddresses(record.name).catch(() => [] as string[]);
      const v4 = addrs.find((a) => /^\d+\.\d+\.\d+\.\d+$/.test(a)) ?? addrs[0];
      if (v4) return { host: v4, port: 22 };
      if (Date.now() > deadline) throw new KilnError('KILN_TIMEOUT', `instance ${record.name} got no address`, { name: record.name });
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  private async takenPorts(except: string): Promise<number[]> {
    const out: number[] = [];
    for (const name of await listInstanceDirs(this.deps.instancesDir)) {
      if (name === except) continue;
      const r = await readRecord(this.deps.instancesDir, name).catch(() => undefined);
      if (r?.ssh) out.push(r.ssh.port);
    }
    return out;
  }

  private async save(record: InstanceRecord): Promise<void> {
    record.updatedAt = new Date().toISOString();
    await writeRecord(this.deps.instancesDir, record);
  }

  /**
   * Removes everything a record names, in reverse order of creation, tolerating what is already
   * gone: domain, seed, disk, image reference, folder. Used by rm, rollback and reconcile.
   */
  private async teardown(record: InstanceRecord, why: string): Promise<void> {
    const { deps } = this;
    const name = record.name;
    const problems: string[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (e) {
        if (isKilnError(e, 'KILN_NOT_FOUND')) return;
        problems.push(`${what}: ${(e as Error).message}`);
        this.log.warn({ name, what, err: e, why }, 'teardown step failed');
      }
    };
    if (record.phase === 'ready') {
      record.phase = 'removing';
      await this.save(record).catch(() => undefined);
    }
    // The domain is only ours if its kiln metadata names this instance: a foreign domain of the
    // same name (the reason a define failed, say) is never touched.
    let ours = false;
    try {
      ours = (await deps.hypervisor.listKiln()).some((d) => d.name === name && d.metadata.instance === name);
    } catch (e) {
      problems.push(`list domains: ${(e as Error).message}`);
    }
    if (ours) {
      await attempt('destroy', () => deps.hypervisor.destroy(name));
      await attempt('undefine', () => deps.hypervisor.undefine(name));
    }
    if (record.seed) await attempt('seed', () => rm(record.seed!.path, { force: true }));
    if (record.disk) await attempt('disk', () => deps.disks.remove(record.disk!));
    if (record.image) await attempt('image reference', () => deps.images.release(record.image!.digest, name));
    if (problems.length) {
      throw new KilnError('KILN_INTERNAL', `could not remove all of instance ${name}: ${problems.join('; ')}`, { name, problems });
    }
    await removeInstanceDir(deps.instancesDir, name);
    this.states.delete(name);
  }

  // ---------------------------------------------------------------- lifecycle

  async list(): Promise<InstanceDetailJson[]> {
    const out: InstanceDetailJson[] = [];
    for (const name of await listInstanceDirs(this.deps.instancesDir)) {
      const r = await readRecord(this.deps.instancesDir, name).catch(() => undefined);
      if (r) out.push(await this.toJson(r));
    }
    return out;
  }

  async count(): Promise<{ count: number }> {
    return { count: (await listInstanceDirs(this.deps.instancesDir)).length };
  }

  async show(name: string): Promise<InstanceDetailJson> {
    return this.toJson(await this.mustRead(name));
  }

  async start(name: string): Promise<InstanceDetailJson> {
    return this.names.with(name, async () => {
      const r = await this.mustReadReady(name);
      await this.ensureDefined(r);
      if ((await this.liveState(name)) !== 'running') await this.deps.hypervisor.start(name);
      return this.toJson(r);
    });
  }

  async stop(name: string, o: { force?: boolean } = {}): Promise<InstanceDetailJson> {
    return this.names.with(name, async () => {
      const r = await this.mustReadReady(name);
      const state = await this.liveState(name);
      if (state !== 'shutoff' && state !== 'missing') {
        if (o.force) await this.deps.hypervisor.destroy(name);
        else await this.deps.hypervisor.shutdown(name, this.deps.config.shutdownGrace);
      }
      return this.toJson(r);
    });
  }

  async remove(name: string): Promise<void> {
    checkName(name);
    await this.names.with(name, async () => {
      const r = await this.mustRead(name);
      await this.teardown(r, 'rm');
      this.log.info({ name }, 'instance removed');
    });
  }

  private async mustRead(name: string): Promise<InstanceRecord> {
    checkName(name);
    const r = await readRecord(this.deps.instancesDir, name);
    if (!r) throw new KilnError('KILN_NOT_FOUND', `no instance named ${name}`, { name });
    return r;
  }

  private async mustReadReady(name: string): Promise<InstanceRecord> {
    const r = await this.mustRead(name);
    if (r.phase !== 'ready') throw new KilnError('KILN_CONFLICT', `instance ${name} is ${r.phase}`, { name, phase: r.phase });
    return r;
  }

  private async liveState(name: string): Promise<string> {
    try {
      const { state } = await this.deps.hypervisor.state(name);
      this.states.set(name, state);
      return state;
    } catch (e) {
      if (isKilnError(e, 'KILN_NOT_FOUND')) {
        this.states.set(name, 'missing');
        return 'missing';
      }
      throw e;
    }
  }

  /** Defines the domain again from the record when libvirt lost it (a test driver restart, a manual undefine). */
  private async ensureDefined(r: InstanceRecord): Promise<void> {
    if ((await this.liveState(r.name)) === 'missing' && r.domain) {
      await this.deps.hypervisor.define(this.deps.domainXml(r.domain));
      this.log.warn({ name: r.name }, 'domain was missing from libvirt; defined it again from the record');
      await this.liveState(r.name);
    }
  }

  private async toJson(r: InstanceRecord): Promise<InstanceDetailJson> {
    const state = r.phase === 'ready' ? await this.liveState(r.name).catch(() => r.state) : r.phase;
    let addresses: string[] = [];
    if (state === 'running' && r.spec.network.kind !== 'user') {
      addresses = await this.deps.hypervisor.interfaceAddresses(r.name).catch(() => []);
    }
    const disk: DiskJson = r.disk ?? { format: 'unknown', virtualSize: 0, mode: r.spec.disk.mode };
    return {
      name: r.name,
      state,
      image: { digest: r.image?.digest ?? '' },
      disk,
      seed: r.seed ?? { path: '', format: r.spec.seed },
      memory: r.spec.memory,
      vcpus: r.spec.vcpus,
      console: r.domain?.consoleLogPath ?? join(instanceDir(this.deps.instancesDir, r.name), 'console.log'),
      addresses,
      ssh: r.ssh,
      ready: r.ready && state === 'running',
      createdAt: r.createdAt,
      uuid: r.uuid,
      network: networkText(r.spec.network),
      phase: r.phase,
      sshUser: r.ssh || r.wait === 'ssh' ? r.sshUser : null,
      sshHostKey: r.sshHostKey ?? null,
    };
  }

  // ---------------------------------------------------------------- start-up

  /**
   * Brings records, libvirt and the cache back in line after a restart or crash:
   * - records still 'provisioning' or 'removing' are rolled back / finished;
   * - folders without a record (crash before the first write) are removed;
   * - 'ready' records whose domain libvirt lost are defined again; their image reference is
   *   taken again (acquire is idempotent);
   * - image references held by instance names that have no record are released;
   * - kiln domains with no record are reported, never touched (another kilnd may own them).
   */
  async reconcile(): Promise<{ rolledBack: string[]; redefined: string[]; released: string[]; orphanDomains: string[] }> {
    const { deps } = this;
    const report = { rolledBack: [] as string[], redefined: [] as string[], released: [] as string[], orphanDomains: [] as string[] };
    await removeTrash(deps.instancesDir);
    const records = new Map<string, InstanceRecord>();
    for (const name of await listInstanceDirs(deps.instancesDir)) {
      await this.names.with(name, async () => {
        const r = await readRecord(deps.instancesDir, name).catch((e) => {
          this.log.error({ name, err: e }, 'unreadable instance record left in place');
          return null;
        });
        if (r === null) return;
        if (!r) {
          await removeInstanceDir(deps.instancesDir, name);
          report.rolledBack.push(name);
          return;
        }
        if (r.phase !== 'ready') {
          await this.teardown(r, `reconcile ${r.phase}`).catch((e) => this.log.error({ name, err: e }, 'reconcile could not roll back'));
          report.rolledBack.push(name);
          return;
        }
        records.set(name, r);
        if (r.image) {
          await deps.images.acquire(r.image.digest, name).catch((e) => this.log.error({ name, err: e, digest: r.image!.digest }, 'image of instance is not in the cache'));
        }
        const before = await this.liveState(name).catch(() => 'unknown');
        if (before === 'missing') {
          await this.ensureDefined(r).then(() => report.redefined.push(name), (e) => this.log.error({ name, err: e }, 'could not define the domain again'));
        }
      });
    }
    for (const image of await deps.images.list().catch(() => [] as ImageJson[])) {
      for (const holder of image.inUseBy) {
        // Only instance holders are ours to release: disk-area holders are not instance names.
        if (!records.has(holder) && INSTANCE_NAME.test(holder)) {
          await deps.images.release(image.digest, holder).then(() => report.released.push(`${image.digest}:${holder}`), () => undefined);
        }
      }
    }
    for (const d of await deps.hypervisor.listKiln().catch(() => [])) {
      if (!records.has(d.metadata.instance)) report.orphanDomains.push(d.name);
    }
    if (report.orphanDomains.length) this.log.warn({ domains: report.orphanDomains }, 'kiln domains without a record in this state dir (left alone)');
    this.unsubscribe ??= deps.hypervisor.onLifecycle?.((e) => {
      if (this.states.has(e.name) && e.state !== 'nostate') this.states.set(e.name, e.state);
    });
    this.log.info(report, 'reconciled instances');
    return report;
  }

  close(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }
}

export type { DomainStateLike };
