// Owns: deciding whether a block device may become a boot volume, and holding it while kiln
// writes: it must be a block device, writable, not mounted (itself or a partition), not swap,
// not held by device-mapper/md (sysfs holders), not backing a loop device, not an LVM physical
// volume, and the kernel must grant an exclusive open (O_EXCL), which kiln keeps until the write
// is done so nobody mounts it meanwhile. Its size is read from the device (BLKGETSIZE64).
// Must not: write to the device (qemu-img does, through tools/), or wipe anything.
import { closeSync, constants, existsSync, openSync, readFileSync, readSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { KilnError } from '../errors.js';
import { blockDeviceSize } from '../../native/libc.js';

/** Where /proc and /sys are; unit tests point these at a fake tree. */
export interface HostRoots {
  proc: string;
  sys: string;
}
export const HOST_ROOTS: HostRoots = Object.freeze({ proc: '/proc', sys: '/sys' });

export interface DeviceClaim {
  /** The path the caller gave (e.g. /dev/vg/lv, a symlink). */
  path: string;
  /** The device node it resolves to (e.g. /dev/dm-3). */
  realPath: string;
  /** "major:minor". */
  devno: string;
  /** Read from the device with BLKGETSIZE64, never from a file size. */
  sizeBytes: number;
  /** Whether the device accepts O_DIRECT (qemu-img -t none). */
  directIo: boolean;
  /** Ends the exclusive claim. Idempotent. */
  release(): void;
}

function devnoOf(rdev: bigint): string {
  // glibc's gnu_dev_major/minor encoding.
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function listDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

function realOrSame(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** Unescapes the octal escapes (\040 for space) /proc/self/mountinfo and /proc/swaps use. */
function unescapeProc(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The devno of the device and of each of its partitions (sysfs entries holding a `partition` file). */
export function deviceAndPartitions(devno: string, roots: HostRoots = HOST_ROOTS): Array<{ devno: string; name: string; sysDir: string }> {
  const sysDir = join(roots.sys, 'dev', 'block', devno);
  const name = realOrSame(sysDir).split('/').pop() ?? devno;
  const out = [{ devno, name, sysDir }];
  for (const entry of listDir(sysDir)) {
    const dir = join(sysDir, entry);
    if (!existsSync(join(dir, 'partition'))) continue;
    const dev = readText(join(dir, 'dev'))?.trim();
    if (dev) out.push({ devno: dev, name: entry, sysDir: dir });
  }
  return out;
}

/**
 * Why the device (or one of its partitions) is in use, from the host's own tables; empty when
 * nothing claims it. The kernel's exclusive open is checked separately (claimBlockDevice).
 */
export function usageReasons(devicePath: string, devno: string, roots: HostRoots = HOST_ROOTS): string[] {
  const reasons: string[] = [];
  const parts = deviceAndPartitions(devno, roots);
  const byDevno = new Map(parts.map((p) => [p.devno, p.name]));
  const realNames = new Set([realOrSame(devicePath), ...parts.map((p) => `/dev/${p.name}`)]);

  // Mounted: mountinfo field 3 is major:minor, the field after " - " + fstype is the source.
  for (const line of (readText(join(roots.proc, 'self', 'mountinfo')) ?? '').split('\n')) {
    const fields = line.split(' ');
    if (fields.length < 10) continue;
    const dash = fields.indexOf('-');
    const mountPoint = unescapeProc(fields[4] ?? '');
    const source = dash > 0 ? unescapeProc(fields[dash + 2] ?? '') : '';
    const name = byDevno.get(fields[2] ?? '');
    if (name !== undefined) reasons.push(`${name} is mounted at ${mountPoint}`);
    else if (source.startsWith('/') && realNames.has(realOrSame(source))) reasons.push(`${source} is mounted at ${mountPoint}`);
  }

  for (const line of (readText(join(roots.proc, 'swaps')) ?? '').split('\n').slice(1)) {
    const file = unescapeProc(line.split(/\s+/)[0] ?? '');
    if (file && realNames.has(realOrSame(file))) reasons.push(`${file} is in use as swap`);
  }

  for (const p of parts) {
    const holders = listDir(join(p.sysDir, 'holders'));
    if (holders.length) reasons.push(`${p.name} is held by ${holders.join(', ')} (device-mapper, md or similar)`);
  }

  // A loop device backed by this device does not show up as a holder.
  for (const entry of listDir(join(roots.sys, 'block'))) {
    if (!entry.startsWith('loop')) continue;
    const backing = readText(join(roots.sys, 'block', entry, 'loop', 'backing_file'))?.trim();
    if (backing && realNames.has(realOrSame(backing))) reasons.push(`${backing} backs /dev/${entry}`);
  }
  return reasons;
}

/** LVM2 writes "LABELONE" at the start of one of the first four sectors, "LVM2 001" 24 bytes in. */
function lvmLabel(fd: number): boolean {
  const head = Buffer.alloc(4 * 512);
  let got = 0;
  try {
    got = readSync(fd, head, 0, head.length, 0);
  } catch {
    return false;
  }
  for (let s = 0; s + 512 <= got; s += 512) {
    if (head.toString('latin1', s, s + 8) === 'LABELONE' && head.toString('latin1', s + 24, s + 32) === 'LVM2 001') return true;
  }
  return false;
}

function inUse(path: string, reasons: string[]): KilnError {
  return new KilnError('KILN_IN_USE', `${path} is in use: ${reasons.join('; ')}`, { device: path, reasons });
}

/**
 * Checks the device and takes an exclusive claim on it. Throws KILN_NOT_FOUND (no such path),
 * KILN_BAD_REQUEST (not a block device, read-only), KILN_IN_USE (details.reasons).
 */
export function claimBlockDevice(path: string, roots: HostRoots = HOST_ROOTS): DeviceClaim {
  if (!isAbsolute(path)) throw new KilnError('KILN_BAD_REQUEST', `boot volume must be an absolute device path, got ${path}`, { device: path });
  let st;
  try {
    st = statSync(path, { bigint: true });
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code;
    if (errno === 'ENOENT') throw new KilnError('KILN_NOT_FOUND', `no device ${path}`, { device: path });
    throw new KilnError('KILN_BAD_REQUEST', `cannot stat ${path}: ${errno}`, { device: path, errno });
  }
  if (!st.isBlockDevice()) throw new KilnError('KILN_BAD_REQUEST', `${path} is not a block device`, { device: path });
  const realPath = realOrSame(path);
  const devno = devnoOf(st.rdev);
  if (readText(join(roots.sys, 'dev', 'block', devno, 'ro'))?.trim() === '1') {
    throw new KilnError('KILN_BAD_REQUEST', `${path} is read-only`, { device: path, devno });
  }
  const reasons = usageReasons(path, devno, roots);
  if (reasons.length) throw inUse(path, reasons);

  let fd: number;
  try {
    // O_EXCL on a block device (without O_CREAT) is the kernel's own claim: it fails with EBUSY
    // while the device is mounted, swapped on, a RAID/LVM member, or claimed by another writer.
    fd = openSync(path, constants.O_RDWR | constants.O_EXCL);
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code;
    if (errno === 'EBUSY') throw inUse(path, ['the kernel refuses an exclusive open (mounted, swap, RAID/LVM member or another exclusive writer)']);
    if (errno === 'EROFS' || errno === 'EACCES' || errno === 'EPERM') {
      throw new KilnError('KILN_BAD_REQUEST', `cannot open ${path} for writing: ${errno}`, { device: path, errno });
    }
    throw new KilnError('KILN_BAD_REQUEST', `cannot open ${path}: ${errno}`, { device: path, errno });
  }
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    closeSync(fd);
  };
  try {
    if (lvmLabel(fd)) throw inUse(path, ['it is an LVM physical volume (LVM2 label)']);
    const sizeBytes = blockDeviceSize(fd);
    let directIo = false;
    try {
      closeSync(openSync(path, constants.O_RDONLY | constants.O_DIRECT));
      directIo = true;
    } catch {
      directIo = false;
    }
    return { path, realPath, devno, sizeBytes, directIo, release };
  } catch (e) {
    release();
    throw e;
  }
}
