// Owns: `kiln disk create` (POST /v1/disks): a disk made from a cached image outside any
// instance. It resolves the image reference, takes the cache reference that keeps the base from
// eviction (holder `disk:<target>`), makes the disk, and keeps the reference only for an
// overlay (the one mode that backs onto the base); it drops references whose overlay is gone.
// Must not: fetch images (only cached ones are used), or import images/ (it sees the cache
// through the narrow ImageRefs view, which ImageCache satisfies).
import { existsSync, readdirSync, realpathSync, unlinkSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { KilnError, toKilnError } from '../errors.js';
import type { KilnConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { DiskJson, ImageJson } from '../api/protocol.js';
import type { Progress } from '../api/types.js';
import type { DiskMode, DiskRequest } from './service.js';
import { PART_PREFIX } from './files.js';

/** What this needs of agent/images ImageCache. */
export interface ImageRefs {
  get(ref: string): Promise<ImageJson>;
  list(): Promise<ImageJson[]>;
  acquire(digest: string, holder: string): Promise<ImageJson>;
  release(digest: string, holder: string): Promise<void>;
}

export interface DiskMaker {
  create(req: DiskRequest, progress?: Progress): Promise<DiskJson>;
}

export interface StandaloneDiskRequest {
  target: string;
  /** 'sha256:HEX' or a unique prefix. */
  image: string;
  sizeBytes?: number;
  /** Default: volume for a target under /dev/, else the configured diskMode. */
  mode?: DiskMode;
}

export type StandaloneDiskJson = DiskJson & { image: { digest: string }; holder?: string };

export const HOLDER_PREFIX = 'disk:';

export class StandaloneDisks {
  private readonly log: Logger;
  /** Targets being made right now: a second request for one is refused, not raced. */
  private readonly inFlight = new Set<string>();
  constructor(private readonly deps: { images: ImageRefs; disks: DiskMaker; config: KilnConfig; log: Logger }) {
    this.log = deps.log.child({ component: 'disks' });
  }

  static modeFor(target: string, requested: DiskMode | undefined, config: Pick<KilnConfig, 'diskMode'>): DiskMode {
    if (requested) return requested;
    return resolve(target).startsWith('/dev/') ? 'volume' : (config.diskMode as DiskMode);
  }

  async create(req: StandaloneDiskRequest, progress?: Progress): Promise<StandaloneDiskJson> {
    const target = resolve(req.target);
    // The state dir is kiln's own (its recovery deletes what it does not know there): a caller's
    // path must not reach into it, directly, through '..' or through a symlinked folder.
    const state = realOrSame(resolve(this.deps.config.stateDir));
    const real = realTarget(target);
    if (real === state || real.startsWith(state + sep)) {
      throw new KilnError('KILN_BAD_REQUEST', `${target} is inside kiln's state directory; standalone disks live elsewhere`, { field: 'target', path: target });
    }
    if (this.inFlight.has(target)) {
      throw new KilnError('KILN_CONFLICT', `a disk is already being created at ${target}`, { path: target });
    }
    this.inFlight.add(target);
    try {
      return await this.createOnce(target, req, progress);
    } finally {
      this.inFlight.delete(target);
    }
  }

  private async createOnce(target: string, req: StandaloneDiskRequest, progress?: Progress): Promise<StandaloneDiskJson> {
    const mode = StandaloneDisks.modeFor(target, req.mode, this.deps.config);
    await this.dropStaleReferences().catch((e) => this.log.warn({ err: e }, 'could not check standalone disk references'));
    if (mode !== 'volume' && existsSync(target)) {
      throw new KilnError('KILN_CONFLICT', `${target} already exists; kiln never overwrites a disk`, { path: target });
    }
    const found = await this.deps.images.get(req.image);
    const holder = HOLDER_PREFIX + target;
    // A reference already there belongs to a disk that exists (or is being made) at this path:
    // a failing request must not take it away.
    const heldBefore = found.inUseBy.includes(holder);
    // Taken before the disk exists: a prune racing this request must see the base as used.
    const image = await this.deps.images.acquire(found.digest, holder);
    let disk: DiskJson;
    try {
      disk = await this.deps.disks.create({ target, image, mode, ...(req.sizeBytes !== undefined ? { sizeBytes: req.sizeBytes } : {}) }, progress);
    } catch (e) {
      if (!heldBefore) await this.deps.images.release(image.digest, holder).catch((r) => this.log.error({ err: r, holder }, 'could not release image reference'));
      throw toKilnError(e);
    }
    if (mode !== 'overlay' && !heldBefore) {
      // A flat copy or a boot volume no longer needs the base.
      await this.deps.images.release(image.digest, holder);
      return { ...disk, image: { digest: image.digest } };
    }
    return { ...disk, image: { digest: image.digest }, holder };
  }

  /**
   * Releases `disk:<path>` references whose overlay file no longer exists (an operator deleted
   * it, or kilnd was killed while making it), so the base becomes evictable again, and removes
   * the part files an interrupted create left beside them. Instance references are never
   * touched. kilnd also runs this at start-up.
   */
  async dropStaleReferences(): Promise<string[]> {
    const dropped: string[] = [];
    for (const image of await this.deps.images.list()) {
      for (const holder of image.inUseBy) {
        if (!holder.startsWith(HOLDER_PREFIX)) continue;
        const path = holder.slice(HOLDER_PREFIX.length);
        // A disk being made right now holds its reference before its file exists.
        if (!path.startsWith('/') || this.inFlight.has(path)) continue;
        // Not in flight, so a part file beside it is what a killed create left behind.
        const parts = removeLeftoverParts(path);
        if (parts.length) this.log.info({ target: path, parts }, 'removed part files of an interrupted disk create');
        if (existsSync(path)) continue;
        await this.deps.images.release(image.digest, holder);
        dropped.push(holder);
        this.log.info({ holder, image: image.digest }, 'dropped the reference of a deleted standalone disk');
      }
    }
    return dropped;
  }
}

function realOrSame(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** `target` with the symlinks of its existing ancestors resolved. */
function realTarget(target: string): string {
  const rest = [basename(target)];
  for (let dir = dirname(target); ; dir = dirname(dir)) {
    try {
      return join(realpathSync(dir), ...rest);
    } catch {
      if (dirname(dir) === dir) return target;
      rest.unshift(basename(dir));
    }
  }
}

/** `.kiln-part-<name>.<8 hex>` files beside target: made by createPartFile (O_EXCL), never by anyone else. */
function removeLeftoverParts(target: string): string[] {
  const prefix = `${PART_PREFIX}${basename(target)}.`;
  let names: string[];
  try {
    names = readdirSync(dirname(target));
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const n of names) {
    if (!n.startsWith(prefix) || !/^[0-9a-f]{8}$/.test(n.slice(prefix.length))) continue;
    try {
      unlinkSync(join(dirname(target), n));
      removed.push(n);
    } catch {
      /* already gone */
    }
  }
  return removed;
}
