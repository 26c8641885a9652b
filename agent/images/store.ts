// Owns: the image cache's files under the state dir: `images/sha256/<hex>/{disk,meta.json,refs/}`,
// how a verified .part becomes an image (staged in tmp/, then one atomic folder rename, so an
// image folder is complete or absent), metadata records (atomic rewrite), reference files,
// removal (rename away first, then delete), quarantine, and the recovery scan after a crash.
// The folders are the index: there is no second database that could disagree with them.
// Must not: download, hash or inspect images, or take locks (ImageCache does, around these calls).
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, mkdir, open, readFile, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KilnError } from '../errors.js';
import type { StateLayout } from '../statedir.js';
import { ATOMIC_TMP_PREFIX, atomicWriteJson, fsyncDir, removeQuiet } from './fsutil.js';

export const META_VERSION = 1;

export interface ImageMeta {
  version: number;
  digest: string;
  sources: string[];
  /** The checksum the first caller declared (`sha512:...`), when one was given. */
  checksum?: string;
  /** Every digest computed while fetching (sha256 always). */
  checksums: Record<string, string>;
  format: string;
  qemuFormat: string;
  virtualSize: number;
  actualSize: number;
  minDisk: number;
  minRam: number;
  fetchedAt: string;
  lastUsedAt: string;
}

const HEX64 = /^[0-9a-f]{64}$/;
/** Holder names become file names: anything outside this set is %-encoded. */
const HOLDER_SAFE = /[^A-Za-z0-9_.@:+-]/g;

export function encodeHolder(holder: string): string {
  if (!holder || holder.length > 200 || holder.includes('\0')) {
    throw new KilnError('KILN_BAD_REQUEST', 'a reference holder must be a non-empty name of at most 200 characters', { holder: holder.slice(0, 80) });
  }
  const enc = holder.replace(HOLDER_SAFE, (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0').toUpperCase());
  return enc === '.' || enc === '..' ? enc.replace(/\./g, '%2E') : enc;
}

export function decodeHolder(name: string): string {
  try {
    return decodeURIComponent(name);
  } catch {
    return name;
  }
}

export interface RecoveryReport {
  /** Resumable downloads kept in tmp/ (a .part with its state record). */
  keptParts: string[];
  /** Files and folders removed from tmp/ (stale parts, staging and trash folders, temp files). */
  removedTmp: string[];
  /** Image folders moved to quarantine/, with why. */
  quarantined: Array<{ name: string; reason: string }>;
  /** Images found complete. */
  images: number;
}

export class ImageStore {
  readonly root: string;

  constructor(readonly layout: StateLayout) {
    this.root = join(layout.images, 'sha256');
  }

  dir(hex: string): string {
    return join(this.root, hex);
  }
  diskPath(hex: string): string {
    return join(this.root, hex, 'disk');
  }
  metaPath(hex: string): string {
    return join(this.root, hex, 'meta.json');
  }
  refsDir(hex: string): string {
    return join(this.root, hex, 'refs');
  }

  async ensureLayout(): Promise<void> {
    for (const d of [this.layout.images, this.root, this.layout.tmp, this.layout.quarantine]) {
      await mkdir(d, { recursive: true, mode: 0o700 });
    }
  }

  /** Hex digests of the images present (folder names that look like one). */
  async hexes(): Promise<string[]> {
    const names = await readdir(this.root).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return [] as string[];
      throw e;
    });
    return names.filter((n) => HEX64.test(n)).sort();
  }

  /** The metadata record, or undefined when no such image is cached. */
  async readMeta(hex: string): Promise<ImageMeta | undefined> {
    let text: string;
    try {
      text = await readFile(this.metaPath(hex), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    const meta = JSON.parse(text) as ImageMeta;
    if (meta.digest !== `sha256:${hex}`) {
      throw new KilnError('KILN_INTERNAL', `image ${hex} has a metadata record for ${meta.digest}`, { hex });
    }
    return meta;
  }

  async writeMeta(hex: string, meta: ImageMeta): Promise<void> {
    await atomicWriteJson(this.metaPath(hex), meta);
  }

  /**
   * Moves a verified file into the cache as image `hex`: staged as tmp/stage-*\/{disk,meta.json},
   * made durable, then renamed into place in one step. The part file is consumed.
   */
  async install(partPath: string, meta: ImageMeta): Promise<void> {
    const hex = meta.digest.slice('sha256:'.length);
    const stage = join(this.layout.tmp, `stage-${hex.slice(0, 16)}-${randomBytes(4).toString('hex')}`);
    await mkdir(stage, { mode: 0o700 });
    try {
      await chmod(partPath, 0o600);
      await rename(partPath, join(stage, 'disk'));
      const fh = await open(join(stage, 'meta.json'), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      try {
        await fh.writeFile(JSON.stringify(meta, null, 2) + '\n');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await mkdir(join(stage, 'refs'), { mode: 0o700 });
      await fsyncDir(stage);
      await fsyncDir(this.layout.tmp);
      await rename(stage, this.dir(hex));
      await fsyncDir(this.root);
    } catch (e) {
      await removeQuiet(stage);
      throw e;
    }
  }

  /** Removes image `hex`: renamed out of the cache first (atomic disappearance), then deleted. */
  async remove(hex: string): Promise<void> {
    const trash = join(this.layout.tmp, `trash-${hex.slice(0, 16)}-${randomBytes(4).toString('hex')}`);
    await rename(this.dir(hex), trash);
    await fsyncDir(this.root);
    await removeQuiet(trash);
  }

  /** Moves a folder of the cache (an image, or debris) to quarantine/ with a reason file. */
  async quarantine(name: string, reason: string): Promise<string> {
    const target = join(this.layout.quarantine, `${name.slice(0, 80)}-${new Date().toISOString().replace(/[:.]/g, '-')}-${randomBytes(3).toString('hex')}`);
    await rename(join(this.root, name), target);
    await fsyncDir(this.root);
    await writeFile(join(target, 'QUARANTINE-REASON'), reason + '\n', { mode: 0o600 }).catch(async () => {
      // A quarantined non-folder: leave the reason beside it.
      await writeFile(target + '.reason', reason + '\n', { mode: 0o600 }).catch(() => undefined);
    });
    return target;
  }

  async refs(hex: string): Promise<string[]> {
    const names = await readdir(this.refsDir(hex)).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return [] as string[];
      throw e;
    });
    return names.filter((n) => !n.startsWith(ATOMIC_TMP_PREFIX)).map(decodeHolder).sort();
  }

  async addRef(hex: string, holder: string): Promise<void> {
    const dir = this.refsDir(hex);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, encodeHolder(holder));
    const fh = await open(path, constants.O_WRONLY | constants.O_CREAT, 0o600);
    try {
      await fh.writeFile(JSON.stringify({ holder, since: new Date().toISOString() }) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsyncDir(dir);
  }

  async removeRef(hex: string, holder: string): Promise<boolean> {
    try {
      await unlink(join(this.refsDir(hex), encodeHolder(holder)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
    await fsyncDir(this.refsDir(hex));
    return true;
  }

  /**
   * After a crash: every image folder is checked (disk + parseable meta for this digest + the
   * recorded size), debris from atomic writes is removed, and broken folders are quarantined.
   * tmp/ keeps only resumable downloads (`isResumable` says which .part files qualify).
   */
  async recover(isResumable: (part: string, stateFile: string) => Promise<boolean>): Promise<RecoveryReport> {
    await this.ensureLayout();
    const report: RecoveryReport = { keptParts: [], removedTmp: [], quarantined: [], images: 0 };

    const tmpNames = await readdir(this.layout.tmp);
    for (const name of tmpNames) {
      const path = join(this.layout.tmp, name);
      if (name.endsWith('.part')) {
        const stateFile = path + '.json';
        if (tmpNames.includes(name + '.json') && (await isResumable(path, stateFile).catch(() => false))) {
          report.keptParts.push(name);
          continue;
        }
        await removeQuiet(stateFile);
        await removeQuiet(path);
        report.removedTmp.push(name);
        continue;
      }
      if (name.endsWith('.part.json') && tmpNames.includes(name.slice(0, -'.json'.length))) continue;
      await removeQuiet(path);
      report.removedTmp.push(name);
    }
    await fsyncDir(this.layout.tmp);

    for (const name of await readdir(this.root)) {
      if (!HEX64.test(name)) {
        report.quarantined.push({ name, reason: 'not an image folder' });
        await this.quarantine(name, 'not an image folder');
        continue;
      }
      const reason = await this.checkImageFolder(name);
      if (reason) {
        report.quarantined.push({ name, reason });
        await this.quarantine(name, reason);
      } else report.images++;
    }
    return report;
  }

  /** Why image folder `hex` is not a complete image, or undefined when it is. */
  private async checkImageFolder(hex: string): Promise<string | undefined> {
    const dir = this.dir(hex);
    const st = await stat(dir);
    if (!st.isDirectory()) return 'not a folder';
    for (const n of await readdir(dir)) {
      if (n.startsWith(ATOMIC_TMP_PREFIX)) await removeQuiet(join(dir, n));
    }
    for (const n of await readdir(this.refsDir(hex)).catch(() => [] as string[])) {
      if (n.startsWith(ATOMIC_TMP_PREFIX)) await removeQuiet(join(this.refsDir(hex), n));
    }
    let meta: ImageMeta | undefined;
    try {
      meta = await this.readMeta(hex);
    } catch (e) {
      return `unreadable metadata: ${(e as Error).message}`;
    }
    if (!meta) return 'metadata record missing';
    let size: number;
    try {
      const ds = await stat(this.diskPath(hex));
      if (!ds.isFile()) return 'disk is not a regular file';
      size = ds.size;
    } catch {
      return 'disk file missing';
    }
    if (size !== meta.actualSize) return `disk is ${size} bytes, metadata says ${meta.actualSize}`;
    return undefined;
  }
}
