// Owns: the small filesystem primitives the image store relies on for crash safety: atomic
// JSON writes (tmp file in the same folder, fsync, rename, fsync the folder), folder fsync,
// free-space queries and quiet removal.
// Must not: know the cache layout or image semantics.
import { randomBytes } from 'node:crypto';
import { constants, statfsSync } from 'node:fs';
import { open, rename, rm, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** fsync a folder so a rename or create inside it survives a power loss. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Prefix of the temporary files atomicWrite leaves behind if killed; recovery removes them. */
export const ATOMIC_TMP_PREFIX = '.tmp-';

export async function atomicWrite(path: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `${ATOMIC_TMP_PREFIX}${basename(path)}-${randomBytes(6).toString('hex')}`);
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (e) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fsyncDir(dir);
}

export async function atomicWriteJson(path: string, value: unknown): Promise<void> {
  await atomicWrite(path, JSON.stringify(value, null, 2) + '\n');
}

/**
 * Bytes available to an unprivileged writer on the filesystem holding `path`. Synchronous (one
 * statfs call) on purpose: the download checks it between headers and body without yielding.
 */
export function freeBytesSync(path: string): number {
  const s = statfsSync(path);
  return s.bavail * s.bsize;
}

export async function removeQuiet(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true }).catch(() => undefined);
}
