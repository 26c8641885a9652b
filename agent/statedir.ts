// Owns: the state directory's layout (private folders) and the exclusive lock that keeps a second
// kilnd off the same state. Must not: know what lives inside images/ or instances/.
import { closeSync, mkdirSync, openSync, writeFileSync, ftruncateSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { KilnError } from './errors.js';
import { tryLockExclusive } from '../native/libc.js';

export interface StateLayout {
  root: string;
  tmp: string;
  images: string;
  instances: string;
  quarantine: string;
  lockFile: string;
}

export function stateLayout(root: string): StateLayout {
  return {
    root,
    tmp: join(root, 'tmp'),
    images: join(root, 'images'),
    instances: join(root, 'instances'),
    quarantine: join(root, 'quarantine'),
    lockFile: join(root, 'kilnd.lock'),
  };
}

/** Creates the layout with 0700 folders (seed ISOs and disks are private to the agent). */
export function ensureStateLayout(layout: StateLayout): void {
  for (const dir of [layout.root, layout.tmp, layout.images, layout.instances, layout.quarantine]) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  }
}

export interface StateLock {
  release(): void;
}

/**
 * Takes the state directory's lock (flock, dies with the process even on kill -9) and records
 * the holder's pid for operators. Throws KILN_LOCKED when another kilnd holds it.
 */
export function lockStateDir(layout: StateLayout): StateLock {
  const fd = openSync(layout.lockFile, 'a+', 0o600);
  if (!tryLockExclusive(fd)) {
    closeSync(fd);
    throw new KilnError('KILN_LOCKED', `another kilnd holds ${layout.lockFile}`, { lockFile: layout.lockFile, stateDir: layout.root });
  }
  ftruncateSync(fd, 0);
  writeFileSync(fd, `${process.pid}\n`);
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      closeSync(fd);
    },
  };
}
