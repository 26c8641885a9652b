// Owns: buildSeed, the one entry point that turns a SeedSpec into deterministic ISO bytes
// (checks, then the format's file set, then the ISO9660 writer), and writeSeedFile, which puts
// those bytes on disk privately (0600) and atomically.
// Must not: choose where seeds live (instances/ does) or spawn programs.
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { writeIso9660, type IsoFileInput } from './iso9660/writer.js';
import { configDriveFiles, CONFIGDRIVE_LABEL } from './configdrive.js';
import { nocloudFiles, NOCLOUD_LABEL } from './nocloud.js';
import { checkSpec, type SeedFormat, type SeedSpec } from './spec.js';
import { KilnError, toKilnError } from '../errors.js';

const PATH_ERRORS = new Set(['ENOENT', 'ENOTDIR', 'EISDIR', 'EACCES', 'EROFS', 'EPERM']);

export function seedLabel(format: SeedFormat): string {
  return format === 'configdrive' ? CONFIGDRIVE_LABEL : NOCLOUD_LABEL;
}

/** The files a seed holds, checked (useful to tests and `kiln seed build --json`). */
export function seedFiles(spec: SeedSpec, o: { maxFileBytes: number }): { label: string; files: IsoFileInput[] } {
  const checked = checkSpec(spec, o.maxFileBytes);
  const files = checked.format === 'configdrive' ? configDriveFiles(checked) : nocloudFiles(checked);
  return { label: seedLabel(checked.format), files };
}

/** Deterministic ISO bytes: the same spec gives the same bytes. Bad input: KILN_BAD_REQUEST. */
export function buildSeed(spec: SeedSpec, o: { maxFileBytes: number }): Buffer {
  const { label, files } = seedFiles(spec, o);
  return writeIso9660({ volumeLabel: label, files, timestamp: spec.createdAt, maxFileBytes: o.maxFileBytes });
}

/** Writes the ISO with mode 0600: temp file in the same folder, fsync, rename, fsync the folder. */
export async function writeSeedFile(path: string, iso: Buffer): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let renamed = false;
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(iso);
      await fh.chmod(0o600);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    renamed = true;
    const dh = await open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } catch (e) {
    if (!renamed) await unlink(tmp).catch(() => undefined);
    const errno = (e as NodeJS.ErrnoException).code;
    // A path the caller named that cannot take a file is the caller's mistake, not a kiln bug.
    if (errno && PATH_ERRORS.has(errno)) {
      throw new KilnError('KILN_BAD_REQUEST', `cannot write the seed to ${path}: ${(e as Error).message}`, { path, errno, reason: 'unwritable path' });
    }
    throw toKilnError(e);
  }
}
