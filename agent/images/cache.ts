// Owns: the image cache service (ImageCache, docs/interfaces.md): one download per image (single
// flight per checksum, lock taken before the "already cached?" check), verification against the
// declared checksum, inspection before anything enters the cache, crash recovery at start-up,
// references held by instance disks, eviction (prune), re-verification and quarantine.
// Must not: build qemu-img argv (tools/), parse image headers (formats/ via safety.ts), or know
// HTTP routes; the API and CLI call this.
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ImageJson, InspectedImageJson } from '../api/protocol.js';
import type { Progress } from '../api/types.js';
import type { KilnConfig } from '../config/schema.js';
import { formatSize } from '../config/units.js';
import { KilnError, isKilnError, toKilnError } from '../errors.js';
import type { Logger } from '../log.js';
import type { MetricsRegistry } from '../metrics.js';
import type { StateLayout } from '../statedir.js';
import type { QemuImg } from '../tools/qemu-img.js';
import { Hashers, formatChecksum, hashFileInto, parseChecksum, type Checksum } from './checksum.js';
import { Downloader, checkFetchUrl, downloaderOptionsFromConfig, type RemoteState } from './fetch.js';
import { atomicWriteJson, freeBytesSync, removeQuiet } from './fsutil.js';
import { KeyedLock, SingleFlight } from './locks.js';
import { assessImage, declaredMatches, imageVerdict, policyFromConfig, type KilnFormat } from './safety.js';
import { ImageStore, META_VERSION, type ImageMeta, type RecoveryReport } from './store.js';

export interface FetchRequest {
  url: string;
  /** 'sha256:HEX' | 'sha512:HEX' (md5/sha1 only with allowWeakChecksums). */
  checksum?: string;
  diskFormat?: string;
  minDisk?: number;
  minRam?: number;
}

/** What the safety inspection tells the cache (images/safety.ts Assessment). */
export interface AssessResult {
  format: string;
  qemuFormat: string;
  virtualSize: number;
  actualSize: number;
}

/** Inspects a file; throws KILN_IMAGE_UNSAFE / KILN_FORMAT_MISMATCH / KILN_FORMAT_NOT_ALLOWED. */
export type Assessor = (path: string, declaredFormat?: string) => Promise<AssessResult>;

export interface ImageCacheDeps {
  layout: StateLayout;
  config: KilnConfig;
  log: Logger;
  metrics: MetricsRegistry;
  qemuImg: QemuImg;
  /** Unit tests pass a stub; the default is images/safety.ts assessImage with the configured policy. */
  assess?: Assessor;
}

export interface VerifyReport {
  ok: string[];
  quarantined: Array<{ digest: string; reason: string }>;
  /** Failed, but an instance disk still backs onto it: reported and left in place. */
  failedInUse: Array<{ digest: string; reason: string; inUseBy: string[] }>;
}

/** A resumable download's record beside its .part in tmp/. */
interface PartState extends RemoteState {
  version: 1;
  key: string;
  /** Leading bytes of the .part known to be on disk (written and fdatasync'ed). */
  durableBytes: number;
  updatedAt: string;
}

/** How long a leftover .part stays resumable after a crash. */
const PART_MAX_AGE_MS = 7 * 24 * 3600 * 1000;
const HEX_REF = /^(?:sha256:)?([0-9a-f]{1,64})$/;

export class ImageCache {
  private readonly store: ImageStore;
  private readonly locks = new KeyedLock();
  private readonly flights = new SingleFlight<ImageJson, Parameters<Progress>[0]>();
  private readonly log: Logger;
  private readonly config: KilnConfig;
  private readonly downloader: Downloader;
  private readonly assess: Assessor;
  private readonly counters;

  constructor(private readonly deps: ImageCacheDeps) {
    this.config = deps.config;
    this.log = deps.log.child({ component: 'images' });
    this.store = new ImageStore(deps.layout);
    this.downloader = new Downloader(downloaderOptionsFromConfig(deps.config), deps.log);
    this.assess = deps.assess ?? defaultAssessor(deps.config, deps.qemuImg);
    this.counters = {
      fetches: deps.metrics.counter('kiln_image_fetches_total', 'Image fetch requests by result (hit, downloaded, joined, error code)'),
      bytes: deps.metrics.counter('kiln_image_download_bytes_total', 'Bytes received while downloading images'),
      evicted: deps.metrics.counter('kiln_image_evictions_total', 'Images removed by prune or rm'),
      quarantined: deps.metrics.counter('kiln_image_quarantined_total', 'Images moved to quarantine'),
    };
  }

  /** Crash recovery: tmp/ keeps only resumable downloads; every image folder is complete or quarantined. */
  async init(): Promise<RecoveryReport> {
    const report = await this.store.recover(async (part, stateFile) => {
      const state = JSON.parse(await readFile(stateFile, 'utf8')) as PartState;
      const st = await stat(part);
      return state.version === 1 && typeof state.url === 'string' && Boolean(state.validator) && Date.now() - st.mtimeMs < PART_MAX_AGE_MS;
    });
    for (const q of report.quarantined) this.counters.quarantined.inc();
    this.log.info({ images: report.images, keptParts: report.keptParts.length, removedTmp: report.removedTmp, quarantined: report.quarantined }, 'image cache recovered');
    return report;
  }

  async close(): Promise<void> {
    await this.downloader.close();
  }

  /** Fetches, verifies, inspects and caches an image; concurrent callers for one checksum share one download. */
  async ensure(req: FetchRequest, progress?: Progress): Promise<ImageJson> {
    checkFetchUrl(req.url);
    for (const [k, v] of [['minDisk', req.minDisk], ['minRam', req.minRam]] as const) {
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw new KilnError('KILN_BAD_REQUEST', `${k} must be a whole number of bytes`, { field: k });
    }
    const checksum = req.checksum ? parseChecksum(req.checksum, { allowWeak: this.config.allowWeakChecksums }) : undefined;
    if (!checksum && this.config.requireChecksum) {
      throw new KilnError('KILN_BAD_REQUEST', 'a checksum is required (--checksum sha256:HEX); the operator can opt out with requireChecksum=false', { field: 'checksum' });
    }
    const key = checksum ? formatChecksum(checksum) : `url:${req.url}`;
    let started = false;
    try {
      const image = await this.flights.run(key, progress, (emit) => {
        started = true;
        return this.locks.with(key, () => this.ensureLocked(req, checksum, key, emit));
      });
      if (!started) {
        this.counters.fetches.inc({ result: 'joined' });
        // A joiner may differ from the first caller in format, source and minimums.
        return await this.withDigest(undefined, hexOf(image.digest), async () => (await this.hit(hexOf(image.digest), req)) ?? image);
      }
      return image;
    } catch (e) {
      this.counters.fetches.inc({ result: toKilnError(e).code });
      throw e;
    }
  }

  async list(): Promise<ImageJson[]> {
    const out: ImageJson[] = [];
    for (const hex of await this.store.hexes()) {
      const meta = await this.store.readMeta(hex).catch(() => undefined);
      if (meta) out.push(await this.toJson(hex, meta));
    }
    return out.sort((a, b) => (b.lastUsedAt ?? '').localeCompare(a.lastUsedAt ?? ''));
  }

  async get(ref: string): Promise<ImageJson> {
    const hex = await this.resolve(ref);
    const meta = await this.store.readMeta(hex);
    if (!meta) throw notFound(ref);
    return this.toJson(hex, meta);
  }

  /** get() plus a fresh safety verdict of the cached file, as `kiln image inspect` shows it. */
  async inspect(ref: string): Promise<InspectedImageJson> {
    const image = await this.get(ref);
    const verdict = await imageVerdict(image.path, { policy: policyFromConfig(this.config), qemuImg: this.deps.qemuImg });
    return { ...image, backingChain: verdict.backingChain, safe: verdict.safe, reasons: verdict.reasons };
  }

  /** Removes an image unless an instance disk references it (KILN_IN_USE). */
  async remove(ref: string): Promise<void> {
    const hex = await this.resolve(ref);
    await this.locks.with(digestKey(hex), async () => {
      if (!(await this.store.readMeta(hex))) throw notFound(ref);
      const refs = await this.store.refs(hex);
      if (refs.length) {
        throw new KilnError('KILN_IN_USE', `image sha256:${hex.slice(0, 12)} is in use by ${refs.join(', ')}`, { digest: `sha256:${hex}`, inUseBy: refs });
      }
      await this.store.remove(hex);
      this.counters.evicted.inc({ reason: 'rm' });
      this.log.info({ digest: `sha256:${hex}` }, 'image removed');
    });
  }

  /**
   * Evicts unused images, least recently used first: those unused for longer than `olderThanMs`,
   * then more until the cache fits in `maxBytes`. With neither (and no cacheMaxBytes), every
   * unused image goes. References are re-checked under each image's lock.
   */
  async prune(o: { maxBytes?: number; olderThanMs?: number } = {}): Promise<{ removed: string[]; freedBytes: number }> {
    const maxBytes = o.maxBytes ?? (this.config.cacheMaxBytes > 0 ? this.config.cacheMaxBytes : undefined);
    const everything = maxBytes === undefined && o.olderThanMs === undefined;
    const entries: Array<{ hex: string; meta: ImageMeta }> = [];
    for (const hex of await this.store.hexes()) {
      const meta = await this.store.readMeta(hex).catch(() => undefined);
      if (meta) entries.push({ hex, meta });
    }
    entries.sort((a, b) => a.meta.lastUsedAt.localeCompare(b.meta.lastUsedAt));
    let total = entries.reduce((n, e) => n + e.meta.actualSize, 0);
    const now = Date.now();
    const removed: string[] = [];
    let freedBytes = 0;
    for (const { hex } of entries) {
      await this.locks.with(digestKey(hex), async () => {
        const meta = await this.store.readMeta(hex).catch(() => undefined);
        if (!meta) return;
        const old = o.olderThanMs !== undefined && now - Date.parse(meta.lastUsedAt) > o.olderThanMs;
        const over = maxBytes !== undefined && total > maxBytes;
        if (!everything && !old && !over) return;
        if ((await this.store.refs(hex)).length) return;
        await this.store.remove(hex);
        total -= meta.actualSize;
        freedBytes += meta.actualSize;
        removed.push(meta.digest);
        this.counters.evicted.inc({ reason: 'prune' });
      });
    }
    this.log.info({ removed, freedBytes, remainingBytes: total }, 'cache pruned');
    return { removed, freedBytes };
  }

  /** Re-hashes and re-inspects every image; failures go to quarantine unless an instance uses them. */
  async verify(progress?: Progress): Promise<VerifyReport> {
    const report: VerifyReport = { ok: [], quarantined: [], failedInUse: [] };
    for (const hex of await this.store.hexes()) {
      await this.locks.with(digestKey(hex), async () => {
        const digest = `sha256:${hex}`;
        let reason: string | undefined;
        let meta: ImageMeta | undefined;
        try {
          meta = await this.store.readMeta(hex);
          if (!meta) return;
        } catch (e) {
          reason = `unreadable metadata: ${(e as Error).message}`;
        }
        if (meta && !reason) {
          const h = new Hashers();
          const size = meta.actualSize;
          try {
            const n = await hashFileInto(this.store.diskPath(hex), h, undefined, (done) => progress?.({ step: `verify ${hex.slice(0, 12)}`, done, total: size }));
            const actual = h.digests().sha256;
            if (actual !== hex) reason = `content hashes to sha256:${actual}`;
            else if (n !== meta.actualSize) reason = `size ${n} differs from recorded ${meta.actualSize}`;
            else {
              const a = await this.assess(this.store.diskPath(hex));
              if (a.format !== meta.format) reason = `inspected as ${a.format}, recorded as ${meta.format}`;
              else if (a.virtualSize !== meta.virtualSize) reason = `virtual size ${a.virtualSize} differs from recorded ${meta.virtualSize}`;
            }
          } catch (e) {
            reason = `${isKilnError(e) ? e.code + ': ' : ''}${(e as Error).message}${Array.isArray((e as KilnError).details?.reasons) ? ' (' + ((e as KilnError).details.reasons as string[]).join('; ') + ')' : ''}`;
          }
        }
        if (!reason) {
          report.ok.push(digest);
          return;
        }
        const refs = await this.store.refs(hex);
        if (refs.length) {
          report.failedInUse.push({ digest, reason, inUseBy: refs });
          this.log.error({ digest, reason, inUseBy: refs }, 'cached image failed verification but is in use; left in place');
          return;
        }
        const where = await this.store.quarantine(hex, reason);
        this.counters.quarantined.inc();
        report.quarantined.push({ digest, reason });
        this.log.error({ digest, reason, quarantine: where }, 'cached image failed verification; quarantined');
      });
    }
    return report;
  }

  /** Records that `holder` (an instance disk) uses the image, after re-inspecting the base file. */
  async acquire(digest: string, holder: string): Promise<ImageJson> {
    const hex = await this.resolve(digest);
    return this.locks.with(digestKey(hex), async () => {
      const meta = await this.store.readMeta(hex);
      if (!meta) throw notFound(digest);
      const a = await this.assess(this.store.diskPath(hex));
      if (a.format !== meta.format) {
        throw new KilnError('KILN_FORMAT_MISMATCH', `cached image sha256:${hex.slice(0, 12)} now inspects as ${a.format}, recorded as ${meta.format}`, { digest: meta.digest, detected: a.format, recorded: meta.format });
      }
      await this.store.addRef(hex, holder);
      const touched = { ...meta, lastUsedAt: new Date().toISOString() };
      await this.store.writeMeta(hex, touched);
      return this.toJson(hex, touched);
    });
  }

  async release(digest: string, holder: string): Promise<void> {
    let hex: string;
    try {
      hex = await this.resolve(digest);
    } catch (e) {
      if (isKilnError(e, 'KILN_NOT_FOUND')) return;
      throw e;
    }
    await this.locks.with(digestKey(hex), async () => {
      if (await this.store.removeRef(hex, holder)) {
        const meta = await this.store.readMeta(hex).catch(() => undefined);
        if (meta) await this.store.writeMeta(hex, { ...meta, lastUsedAt: new Date().toISOString() });
      }
    });
  }

  async stats(): Promise<{ count: number; bytes: number }> {
    let count = 0;
    let bytes = 0;
    for (const hex of await this.store.hexes()) {
      const meta = await this.store.readMeta(hex).catch(() => undefined);
      if (!meta) continue;
      count++;
      bytes += meta.actualSize;
    }
    return { count, bytes };
  }

  /** `sha256:HEX`, `HEX` or a unique hex prefix -> the full hex digest. */
  private async resolve(ref: string): Promise<string> {
    const m = HEX_REF.exec(ref.trim().toLowerCase());
    if (!m) throw new KilnError('KILN_BAD_REQUEST', `"${ref.slice(0, 100)}" is not an image reference (sha256:HEX or a hex prefix)`, { ref: ref.slice(0, 100) });
    const prefix = m[1]!;
    if (prefix.length === 64) return prefix;
    const matches = (await this.store.hexes()).filter((h) => h.startsWith(prefix));
    if (matches.length === 0) throw notFound(ref);
    if (matches.length > 1) throw new KilnError('KILN_CONFLICT', `image reference ${ref} is ambiguous (${matches.length} images)`, { ref, matches: matches.map((h) => `sha256:${h}`) });
    return matches[0]!;
  }

  /** Runs fn under the image's own lock, unless the caller's flight key already is that lock. */
  private withDigest<T>(heldKey: string | undefined, hex: string, fn: () => Promise<T>): Promise<T> {
    return heldKey === digestKey(hex) ? fn() : this.locks.with(digestKey(hex), fn);
  }

  private async ensureLocked(req: FetchRequest, checksum: Checksum | undefined, key: string, emit: Progress): Promise<ImageJson> {
    // The flight's lock is held: a cached image found now cannot be half-installed or evicted
    // before we touch it (eviction takes the image lock; for sha512 we take it below).
    const cachedHex = checksum ? (checksum.algo === 'sha256' ? checksum.hex : await this.findByChecksum(checksum)) : undefined;
    if (cachedHex) {
      const hit = await this.withDigest(key, cachedHex, () => this.hit(cachedHex, req));
      if (hit) {
        this.counters.fetches.inc({ result: 'hit' });
        emit({ step: 'cached', message: hit.digest });
        return hit;
      }
    }
    return this.download(req, checksum, key, emit);
  }

  private async download(req: FetchRequest, checksum: Checksum | undefined, key: string, emit: Progress): Promise<ImageJson> {
    const partName = createHash('sha256').update(key).digest('hex').slice(0, 32) + '.part';
    const part = join(this.deps.layout.tmp, partName);
    const stateFile = part + '.json';
    await this.store.ensureLayout();
    const hashers = new Hashers(checksum?.algo);
    const resume = await this.prepareResume(part, stateFile, key, req.url, hashers, emit);

    // The state record is rewritten as the download learns things; writes are chained, never concurrent.
    let record: PartState = { version: 1, key, url: req.url, durableBytes: resume?.bytes ?? 0, updatedAt: '' , ...(resume ? { ...resume.state } : {}) };
    let writing: Promise<void> = Promise.resolve();
    const saveRecord = (patch: Partial<PartState>) => {
      record = { ...record, ...patch, updatedAt: new Date().toISOString() };
      const snapshot = record;
      writing = writing.then(() => atomicWriteJson(stateFile, snapshot)).catch((e: unknown) => this.log.warn({ err: e }, 'could not record download state'));
      return writing;
    };
    const dropPart = async () => {
      await writing;
      await removeQuiet(part);
      await removeQuiet(stateFile);
    };

    const started = performance.now();
    let result;
    try {
      result = await this.downloader.download({
        url: req.url,
        partPath: part,
        hashers,
        ...(resume ? { resume } : {}),
        maxBytes: this.config.fetchMaxBytes,
        onState: (s) => {
          const { validator, total } = s;
          const base: PartState = { version: 1, key, url: req.url, durableBytes: record.durableBytes, updatedAt: '' };
          record = { ...base, ...(validator ? { validator } : {}), ...(total !== undefined ? { total } : {}) };
          void saveRecord({});
        },
        onDurable: (bytes) => void saveRecord({ durableBytes: bytes }),
        beforeBody: ({ total, offset }) => {
          if (total === undefined) return;
          const need = total - offset + this.config.freeSpaceMargin;
          const free = freeBytesSync(this.deps.layout.tmp);
          if (free < need) {
            throw new KilnError('KILN_NO_SPACE', `not enough free space for ${req.url}: need ${formatSize(need)} (image ${formatSize(total - offset)} + margin ${formatSize(this.config.freeSpaceMargin)}), ${formatSize(free)} free`, {
              needBytes: need, freeBytes: free, path: this.deps.layout.tmp,
            });
          }
        },
        onProgress: ({ done, total, rate }) => emit({ step: 'fetch', done, ...(total !== undefined ? { total } : {}), rate }),
      });
    } catch (e) {
      const err = toKilnError(e, 'KILN_FETCH_FAILED');
      // A dropped connection leaves a resumable .part (tmp only, never the cache); anything
      // that proves the bytes useless removes it.
      const resumable = err.code === 'KILN_FETCH_FAILED' && err.details.reason !== 'length-mismatch' && err.details.status === undefined && Boolean(record.validator);
      if (!resumable) await dropPart();
      else await writing;
      this.log.warn({ url: req.url, code: err.code, kept: resumable, err: err.message }, 'image download failed');
      throw err;
    }
    this.counters.bytes.inc({}, result.received);
    const seconds = (performance.now() - started) / 1000;
    this.log.info({ url: req.url, bytes: result.bytes, seconds, requests: result.requests, resumes: result.resumes, restarts: result.restarts, resumedFrom: resume?.bytes ?? 0 }, 'image downloaded');

    emit({ step: 'verify' });
    const digests = hashers.digests();
    if (checksum && digests[checksum.algo] !== checksum.hex) {
      await dropPart();
      throw new KilnError('KILN_CHECKSUM_MISMATCH', `${req.url} does not match ${checksum.algo}:${checksum.hex.slice(0, 16)}…: got ${checksum.algo}:${String(digests[checksum.algo]).slice(0, 16)}…; nothing was cached`, {
        url: req.url, algo: checksum.algo, expected: checksum.hex, actual: digests[checksum.algo], bytes: result.bytes,
      });
    }
    const hex = digests.sha256;

    emit({ step: 'inspect' });
    let a: AssessResult;
    try {
      a = await this.assess(part, req.diskFormat);
    } catch (e) {
      await dropPart();
      throw e;
    }
    const now = new Date().toISOString();
    const meta: ImageMeta = {
      version: META_VERSION,
      digest: `sha256:${hex}`,
      sources: [req.url],
      ...(checksum ? { checksum: formatChecksum(checksum) } : {}),
      checksums: digests as Record<string, string>,
      format: a.format,
      qemuFormat: a.qemuFormat,
      virtualSize: a.virtualSize,
      actualSize: result.bytes,
      minDisk: req.minDisk ?? 0,
      minRam: req.minRam ?? 0,
      fetchedAt: now,
      lastUsedAt: now,
    };
    const image = await this.withDigest(key, hex, async () => {
      if (await this.store.readMeta(hex).catch(() => undefined)) {
        // Same bytes reached through another checksum or URL while we downloaded.
        await dropPart();
        return (await this.hit(hex, req, meta.checksums))!;
      }
      await this.store.install(part, meta);
      await writing;
      await removeQuiet(stateFile);
      return this.toJson(hex, meta);
    });
    this.counters.fetches.inc({ result: 'downloaded' });
    emit({ step: 'done', message: image.digest });
    this.log.info({ digest: image.digest, format: image.format, virtualSize: image.virtualSize, url: req.url }, 'image cached');
    return image;
  }

  /** A leftover .part of this key is re-hashed and resumed, if its record says it can be. */
  private async prepareResume(part: string, stateFile: string, key: string, url: string, hashers: Hashers, emit: Progress): Promise<{ bytes: number; state: RemoteState } | undefined> {
    let state: PartState | undefined;
    let size = 0;
    try {
      state = JSON.parse(await readFile(stateFile, 'utf8')) as PartState;
      size = (await stat(part)).size;
    } catch {
      state = undefined;
    }
    const keep = state ? Math.min(size, state.durableBytes ?? 0) : 0;
    if (!state || state.key !== key || state.url !== url || !state.validator || keep <= 0) {
      await removeQuiet(part);
      await removeQuiet(stateFile);
      return undefined;
    }
    emit({ step: 'resume', done: 0, total: keep, message: 're-hashing the partial download' });
    await hashFileInto(part, hashers, keep, (done) => emit({ step: 'resume', done, total: keep }));
    this.log.info({ url, bytes: keep, of: state.total }, 'resuming a partial download');
    return { bytes: keep, state: { url, validator: state.validator, ...(state.total !== undefined ? { total: state.total } : {}) } };
  }

  private async findByChecksum(c: Checksum): Promise<string | undefined> {
    for (const hex of await this.store.hexes()) {
      const meta = await this.store.readMeta(hex).catch(() => undefined);
      if (meta?.checksums[c.algo] === c.hex) return hex;
    }
    return undefined;
  }

  /**
   * A cached image answering `req`: the declared format must agree; the source, minimums (the
   * larger wins) and last-used time are recorded. Undefined when the image is not (fully) there.
   */
  private async hit(hex: string, req: FetchRequest, moreChecksums?: Record<string, string>): Promise<ImageJson | undefined> {
    const meta = await this.store.readMeta(hex).catch(() => undefined);
    if (!meta) return undefined;
    try {
      await stat(this.store.diskPath(hex));
    } catch {
      return undefined;
    }
    if (req.diskFormat && !declaredMatches(meta.format as KilnFormat, req.diskFormat)) {
      throw new KilnError('KILN_FORMAT_MISMATCH', `image sha256:${hex.slice(0, 12)} is ${meta.format}, not ${req.diskFormat}`, { digest: meta.digest, detected: meta.format, declared: req.diskFormat });
    }
    const next: ImageMeta = {
      ...meta,
      sources: meta.sources.includes(req.url) ? meta.sources : [...meta.sources, req.url],
      checksums: { ...meta.checksums, ...moreChecksums },
      minDisk: Math.max(meta.minDisk, req.minDisk ?? 0),
      minRam: Math.max(meta.minRam, req.minRam ?? 0),
      lastUsedAt: new Date().toISOString(),
    };
    await this.store.writeMeta(hex, next);
    return this.toJson(hex, next);
  }

  private async toJson(hex: string, meta: ImageMeta): Promise<ImageJson> {
    return {
      digest: meta.digest,
      format: meta.format,
      virtualSize: meta.virtualSize,
      actualSize: meta.actualSize,
      path: this.store.diskPath(hex),
      sources: meta.sources,
      minDisk: meta.minDisk,
      minRam: meta.minRam,
      inUseBy: await this.store.refs(hex),
      ...(meta.checksum ? { checksum: meta.checksum } : {}),
      fetchedAt: meta.fetchedAt,
      lastUsedAt: meta.lastUsedAt,
    };
  }
}

function digestKey(hex: string): string {
  return `sha256:${hex}`;
}

function hexOf(digest: string): string {
  return digest.slice('sha256:'.length);
}

function notFound(ref: string): KilnError {
  return new KilnError('KILN_NOT_FOUND', `no cached image ${ref}`, { ref });
}

/** images/safety.ts's assessImage with the configured policy. */
function defaultAssessor(config: KilnConfig, qemuImg: QemuImg): Assessor {
  const policy = policyFromConfig(config);
  return async (path, declaredFormat) => {
    const a = await assessImage(path, { ...(declaredFormat ? { declaredFormat } : {}), policy, qemuImg });
    return { format: a.format, qemuFormat: a.qemuFormat, virtualSize: a.virtualSize, actualSize: a.actualSize };
  };
}
