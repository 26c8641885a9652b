// Owns: how disk files appear on the filesystem: private (0600 files, 0700 folders kiln makes),
// built under a temporary name beside the target and published only when complete (link, so an
// existing target is never replaced), durable (fsync of file and folder), and whether O_DIRECT
// works where they live (qemu-img -t none).
// Must not: run qemu-img or know disk formats.
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fsyncSync, openSync, statSync, unlinkSync } from 'node:fs';
import { link, lstat, mkdir, open, unlink } from 'node:fs/promises';
import { basename, dirname, join, parse, sep } from 'node:path';
import { KilnError, toKilnError } from '../errors.js';

/** Leftovers of a killed create carry this prefix, so an operator (or a sweep) can spot them. */
export const PART_PREFIX = '.kiln-part-';

/** Creates the missing folders of dir with 0700; returns the folders it created. */
export async function ensurePrivateDir(dir: string): Promise<string[]> {
  const created: string[] = [];
  const missing: string[] = [];
  let cur = dir;
  for (;;) {
    try {
      const st = await lstat(cur);
      if (!st.isDirectory()) throw new KilnError('KILN_BAD_REQUEST', `${cur} exists and is not a folder`, { path: cur });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw toKilnError(e);
      missing.unshift(cur);
      const up = dirname(cur);
      if (up === cur || cur === parse(cur).root) break;
      cur = up;
    }
  }
  for (const d of missing) {
    await mkdir(d, { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw toKilnError(e);
    });
    created.push(d);
  }
  return created;
}

/** Whether the folder's mode lets anyone but its owner in (the caller logs a warning). */
export function folderIsShared(dir: string): boolean {
  return (statSync(dir).mode & 0o077) !== 0;
}

/**
 * Makes an empty 0600 file beside target, under a temporary name. qemu-img create/convert then
 * truncate and fill it, and an existing file keeps its mode, so the disk is never readable by others.
 */
export async function createPartFile(target: string): Promise<string> {
  const part = join(dirname(target), `${PART_PREFIX}${basename(target)}.${randomBytes(4).toString('hex')}`);
  const fh = await open(part, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
  await fh.close();
  return part;
}

export function fsyncFile(path: string): void {
  const fd = openSync(path, constants.O_RDONLY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function fsyncFolder(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Publishes a finished part file at target: fsync, hard link (fails if target exists, so a disk
 * is never overwritten), drop the temporary name, fsync the folder.
 */
export async function publish(part: string, target: string): Promise<void> {
  fsyncFile(part);
  try {
    await link(part, target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new KilnError('KILN_CONFLICT', `${target} already exists; kiln never overwrites a disk`, { path: target });
    }
    throw toKilnError(e);
  } finally {
    await unlink(part).catch(() => undefined);
  }
  fsyncFolder(dirname(target));
}

/** Removes a file if present; true when something was removed. */
export async function removeFile(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw toKilnError(e);
  }
}

/** True when path is strictly inside dir (both resolved by the caller). */
export function isInside(path: string, dir: string): boolean {
  const d = dir.endsWith(sep) ? dir : dir + sep;
  return path.startsWith(d) && path.length > d.length;
}

/**
 * Whether files in dir can be opened with O_DIRECT (tmpfs and some FUSE/overlay filesystems
 * refuse it with EINVAL, and then qemu-img -t none fails). Probed with a throw-away file on
 * every call: it costs three syscalls, and a folder can be remounted between two disks.
 */
export function supportsDirectIo(dir: string): boolean {
  const probe = join(dir, `${PART_PREFIX}odirect-probe.${randomBytes(4).toString('hex')}`);
  let ok = false;
  try {
    closeSync(openSync(probe, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600));
    try {
      closeSync(openSync(probe, constants.O_RDWR | constants.O_DIRECT));
      ok = true;
    } catch {
      ok = false;
    }
  } finally {
    try {
      unlinkSync(probe);
    } catch {
      /* never created */
    }
  }
  return ok;
}
