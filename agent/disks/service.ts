// Owns: turning a cached image into the disk a guest boots from: a qcow2 overlay on the cached
// base (default), a flat copy in the configured format, or a boot volume written onto a block
// device; the size policy is applied before anything is written, and whatever this module
// created is removed again when a step fails.
// Must not: fetch, cache or evict images (images/ does; the caller acquires and releases the
// base), name qemu-img's argv (tools/qemu-img.ts does), or ever wipe or remove a block device.
import { existsSync, realpathSync } from 'node:fs';
import { rmdir } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { KilnError, toKilnError } from '../errors.js';
import type { KilnConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { DiskJson, ImageJson } from '../api/protocol.js';
import type { Progress } from '../api/types.js';
import type { QemuFormat, QemuImg, QemuImgInfo } from '../tools/qemu-img.js';
import { stateLayout } from '../statedir.js';
import { checkSizes, resolveDiskSize } from './size-policy.js';
import { claimBlockDevice, HOST_ROOTS, type DeviceClaim, type HostRoots } from './block-device.js';
import { createPartFile, ensurePrivateDir, folderIsShared, fsyncFile, isInside, publish, removeFile, supportsDirectIo } from './files.js';

export type DiskMode = 'overlay' | 'flat' | 'volume';
export const DISK_MODES: readonly DiskMode[] = Object.freeze(['overlay', 'flat', 'volume']);

export interface DiskRequest {
  /** A file path (overlay, flat) or a block device (volume). */
  target: string;
  image: ImageJson;
  sizeBytes?: number;
  mode: DiskMode;
  memoryBytes?: number;
}

export interface DiskServiceDeps {
  qemuImg: QemuImg;
  config: KilnConfig;
  log: Logger;
  /** /proc and /sys; tests of the in-use checks point these elsewhere. */
  roots?: HostRoots;
  /** Whether a folder takes O_DIRECT; the real probe by default, a stub in unit tests. */
  directIoProbe?: (dir: string) => boolean;
}

/** qcow2's own cluster size bounds; below 64 KiB (qemu's default) matching the base costs metadata. */
const MIN_MATCHED_CLUSTER = 64 * 1024;
const MAX_CLUSTER = 2 * 1024 * 1024;

/** The qemu-img format a cached image is read with. ISO and partitioned images boot as raw bytes. */
export function qemuFormatOf(format: string): QemuFormat {
  switch (format) {
    case 'raw':
    case 'iso':
    case 'gpt':
    case 'mbr':
      return 'raw';
    case 'vhd':
      return 'vpc';
    case 'qcow2':
    case 'vmdk':
    case 'vhdx':
    case 'vdi':
      return format;
    default:
      throw new KilnError('KILN_FORMAT_NOT_ALLOWED', `images of format ${format} cannot back a disk`, { format });
  }
}

/** A counting semaphore: disk-heavy copies beyond diskConcurrency wait their turn. */
class Slots {
  private free: number;
  private readonly waiting: Array<() => void> = [];
  constructor(n: number) {
    this.free = n;
  }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((r) => this.waiting.push(r));
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}

interface Base {
  path: string;
  format: QemuFormat;
  info: QemuImgInfo;
}

export class DiskService {
  private readonly qemuImg: QemuImg;
  private readonly config: KilnConfig;
  private readonly log: Logger;
  private readonly roots: HostRoots;
  private readonly slots: Slots;
  private readonly directIo: (dir: string) => boolean;

  constructor(deps: DiskServiceDeps) {
    this.qemuImg = deps.qemuImg;
    this.config = deps.config;
    this.log = deps.log.child({ component: 'disks' });
    this.roots = deps.roots ?? HOST_ROOTS;
    this.slots = new Slots(deps.config.diskConcurrency);
    this.directIo = deps.directIoProbe ?? supportsDirectIo;
  }

  /** Materializes the disk. On failure nothing it created is left behind (a device is left as it is). */
  async create(req: DiskRequest, progress?: Progress): Promise<DiskJson> {
    if (!DISK_MODES.includes(req.mode)) {
      throw new KilnError('KILN_BAD_REQUEST', `disk mode must be one of ${DISK_MODES.join(', ')}`, { mode: req.mode });
    }
    if (req.sizeBytes !== undefined && (!Number.isSafeInteger(req.sizeBytes) || req.sizeBytes <= 0)) {
      throw new KilnError('KILN_BAD_REQUEST', 'disk size must be a positive whole number of bytes', { requestedBytes: req.sizeBytes });
    }
    const started = Date.now();
    const disk = req.mode === 'volume' ? await this.createVolume(req, progress) : await this.createFile(req, progress);
    this.log.info({ mode: disk.mode, target: disk.path ?? disk.device, image: req.image.digest, virtualSize: disk.virtualSize, durationMs: Date.now() - started }, 'disk created');
    return disk;
  }

  /** Removes a file disk. A block device is never wiped or touched: the operator owns it. */
  async remove(disk: DiskJson): Promise<void> {
    if (disk.mode === 'volume' || disk.device !== undefined) {
      this.log.info({ device: disk.device }, 'boot volume left as it is');
      return;
    }
    if (!disk.path) return;
    const path = resolve(disk.path);
    if (isInside(path, this.cacheDir())) {
      throw new KilnError('KILN_BAD_REQUEST', `refusing to remove ${path}: it is inside the image cache`, { path });
    }
    if (await removeFile(path)) this.log.info({ path }, 'disk removed');
  }

  private cacheDir(): string {
    const images = stateLayout(this.config.stateDir).images;
    try {
      return realpathSync(images);
    } catch {
      return resolve(images);
    }
  }

  /**
   * The cached base, checked again right before use: its real path must be inside the image
   * cache (an overlay's backing path is absolute and pinned there), and qemu-img, told the
   * format, must still see no backing or data file and the virtual size the cache recorded.
   */
  private async checkBase(image: ImageJson): Promise<Base> {
    let path: string;
    try {
      path = realpathSync(image.path);
    } catch (e) {
      throw new KilnError('KILN_NOT_FOUND', `the base of ${image.digest} is missing from the cache: ${image.path}`, { image: image.digest, path: image.path }, { cause: e });
    }
    if (!isInside(path, this.cacheDir())) {
      throw new KilnError('KILN_IMAGE_UNSAFE', `the base of ${image.digest} is outside the image cache`, { image: image.digest, path, reasons: ['base outside the image cache'] });
    }
    const format = qemuFormatOf(image.format);
    const info = await this.qemuImg.info(path, format);
    const reasons: string[] = [];
    if (info.backingFilename !== undefined) reasons.push(`base has a backing file (${info.backingFilename})`);
    if (info.dataFile !== undefined) reasons.push(`base has an external data file (${info.dataFile})`);
    if (info.virtualSize !== image.virtualSize) reasons.push(`base virtual size ${info.virtualSize} differs from the cached ${image.virtualSize}`);
    if (reasons.length) throw new KilnError('KILN_IMAGE_UNSAFE', `the base of ${image.digest} failed its re-inspection: ${reasons.join('; ')}`, { image: image.digest, reasons });
    return { path, format, info };
  }

  private fileTarget(target: string): string {
    if (typeof target !== 'string' || !isAbsolute(target)) {
      throw new KilnError('KILN_BAD_REQUEST', `disk target must be an absolute path, got ${String(target)}`, { target });
    }
    const path = resolve(target);
    if (path.startsWith('/dev/')) {
      throw new KilnError('KILN_BAD_REQUEST', `${path} is under /dev: block devices take mode "volume" (--boot-volume)`, { target: path });
    }
    if (isInside(path, this.cacheDir()) || path === this.cacheDir()) {
      throw new KilnError('KILN_BAD_REQUEST', `${path} is inside the image cache; disks live elsewhere`, { target: path });
    }
    return path;
  }

  private async createFile(req: DiskRequest, progress?: Progress): Promise<DiskJson> {
    const target = this.fileTarget(req.target);
    // Checked again, atomically, when the finished disk is linked into place.
    if (existsSync(target)) throw new KilnError('KILN_CONFLICT', `${target} already exists; kiln never overwrites a disk`, { path: target });
    const sizeBytes = resolveDiskSize(req.image, req.sizeBytes);
    checkSizes(req.image, { diskBytes: sizeBytes, memoryBytes: req.memoryBytes });
    progress?.({ step: 'disk: inspect base', message: req.image.digest });
    const base = await this.checkBase(req.image);

    const folder = dirname(target);
    const createdDirs = await ensurePrivateDir(folder);
    if (!createdDirs.length && folderIsShared(folder)) {
      this.log.warn({ folder }, 'disk folder is open to group or others; the disk file itself is 0600');
    }
    let part: string | undefined;
    try {
      part = await createPartFile(target);
      const disk = req.mode === 'overlay'
        ? await this.writeOverlay(part, base, sizeBytes, progress)
        : await this.slots.run(() => this.writeFlat(part!, folder, base, sizeBytes, progress));
      progress?.({ step: 'disk: publish', message: target });
      await publish(part, target);
      part = undefined;
      return { ...disk, path: target };
    } catch (e) {
      if (part) await removeFile(part).catch(() => undefined);
      for (const d of createdDirs.reverse()) await rmdir(d).catch(() => undefined);
      throw toKilnError(e);
    }
  }

  private async writeOverlay(part: string, base: Base, sizeBytes: number, progress?: Progress): Promise<Omit<DiskJson, 'path'>> {
    const baseCluster = base.format === 'qcow2' ? base.info.clusterSize : undefined;
    // Same clusters as the base: a copy-on-write then moves whole base clusters, aligned.
    const clusterSize = baseCluster !== undefined && baseCluster >= MIN_MATCHED_CLUSTER && baseCluster <= MAX_CLUSTER ? baseCluster : undefined;
    progress?.({ step: 'disk: create overlay', total: sizeBytes });
    await this.qemuImg.create(part, { format: 'qcow2', size: sizeBytes, backing: { path: base.path, format: base.format }, ...(clusterSize ? { clusterSize } : {}) });
    const info = await this.qemuImg.info(part, 'qcow2');
    const problems: string[] = [];
    if (info.backingFilename !== base.path) problems.push(`backing file is ${String(info.backingFilename)}, not ${base.path}`);
    if (info.backingFormat !== base.format) problems.push(`backing format is ${String(info.backingFormat)}, not ${base.format}`);
    if (info.virtualSize !== sizeBytes) problems.push(`virtual size is ${info.virtualSize}, not ${sizeBytes}`);
    if (problems.length) throw new KilnError('KILN_QEMU_IMG', `the new overlay is not what was asked: ${problems.join('; ')}`, { subcommand: 'create', exitCode: 0, stderrTail: '', problems });
    return { format: 'qcow2', virtualSize: info.virtualSize, mode: 'overlay' };
  }

  private async writeFlat(part: string, folder: string, base: Base, sizeBytes: number, progress?: Progress): Promise<Omit<DiskJson, 'path'>> {
    const format = this.config.flatFormat as 'raw' | 'qcow2';
    const direct = this.directIo(folder);
    progress?.({ step: 'disk: copy', total: base.info.virtualSize, message: `${base.format} -> ${format}${direct ? ' (O_DIRECT)' : ''}` });
    // -W: out-of-order writes; sparse detection stays on, so holes stay holes.
    await this.qemuImg.convert({ src: base.path, srcFormat: base.format, dst: part, dstFormat: format, cache: direct ? 'none' : 'writeback', parallel: true });
    if (!direct) fsyncFile(part);
    let info = await this.qemuImg.info(part, format);
    if (info.backingFilename !== undefined) {
      throw new KilnError('KILN_QEMU_IMG', 'the flat copy unexpectedly has a backing file', { subcommand: 'convert', exitCode: 0, stderrTail: '' });
    }
    if (sizeBytes > info.virtualSize) {
      progress?.({ step: 'disk: grow', total: sizeBytes });
      await this.qemuImg.resize(part, format, sizeBytes);
      info = await this.qemuImg.info(part, format);
    }
    if (info.virtualSize !== sizeBytes) {
      throw new KilnError('KILN_QEMU_IMG', `the flat copy has ${info.virtualSize} bytes, not ${sizeBytes}`, { subcommand: 'resize', exitCode: 0, stderrTail: '' });
    }
    return { format, virtualSize: info.virtualSize, mode: 'flat' };
  }

  private async createVolume(req: DiskRequest, progress?: Progress): Promise<DiskJson> {
    progress?.({ step: 'disk: inspect base', message: req.image.digest });
    const base = await this.checkBase(req.image);
    const claim: DeviceClaim = claimBlockDevice(req.target, this.roots);
    try {
      // The device is what it is: its own size, read with BLKGETSIZE64, is the disk size.
      checkSizes(req.image, { diskBytes: claim.sizeBytes, memoryBytes: req.memoryBytes });
      if (req.sizeBytes !== undefined && req.sizeBytes > claim.sizeBytes) {
        throw new KilnError('KILN_DISK_TOO_SMALL', `${req.target} holds ${claim.sizeBytes} bytes, less than the ${req.sizeBytes} bytes asked for`, {
          requiredBytes: req.sizeBytes, requestedBytes: claim.sizeBytes, device: req.target, reason: 'device smaller than the requested size',
        });
      }
      this.log.info({ device: req.target, realPath: claim.realPath, deviceBytes: claim.sizeBytes, directIo: claim.directIo }, 'writing boot volume');
      await this.slots.run(async () => {
        progress?.({ step: 'disk: write volume', total: base.info.virtualSize, message: req.target });
        // No --target-is-zero: kiln cannot prove an existing device reads as zeros, and claiming
        // it wrongly would leave old bytes in the image's holes. qemu-img zeroes holes itself
        // (with write-zeroes offload where the device has it).
        await this.qemuImg.convert({
          src: base.path, srcFormat: base.format, dst: claim.realPath, dstFormat: 'raw',
          noCreate: true, targetIsZero: false, cache: claim.directIo ? 'none' : 'writeback', parallel: true,
        });
        fsyncFile(claim.realPath);
      });
      return { device: req.target, format: 'raw', virtualSize: claim.sizeBytes, mode: 'volume' };
    } finally {
      claim.release();
    }
  }
}
