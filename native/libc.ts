// Owns: the few libc calls Node lacks: flock(2) on a file descriptor and the BLKGETSIZE64 ioctl.
// Every symbol used is listed here, typed; a missing library or symbol fails loudly by name.
// Must not: hold file descriptors; callers open and close them.
import koffi, { type LibraryHandle } from 'koffi';
import { KilnError } from '../agent/errors.js';

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const EWOULDBLOCK = 11;
const EINTR = 4;
// _IOR(0x12, 114, size_t) on Linux x86_64/aarch64.
const BLKGETSIZE64 = 0x80081272;

interface LibcBindings {
  flock: (fd: number, op: number) => number;
  ioctlU64: (fd: number, request: number, out: [bigint]) => number;
}

let bindings: LibcBindings | undefined;

function libc(): LibcBindings {
  if (bindings) return bindings;
  let lib: LibraryHandle;
  try {
    lib = koffi.load('libc.so.6');
  } catch (e) {
    throw new KilnError('KILN_INTERNAL', `cannot load libc.so.6: ${(e as Error).message}`, { library: 'libc.so.6' });
  }
  const bind = <T>(signature: string, symbol: string): T => {
    try {
      return lib.func(signature) as T;
    } catch (e) {
      throw new KilnError('KILN_INTERNAL', `libc.so.6 lacks ${symbol}: ${(e as Error).message}`, { library: 'libc.so.6', symbol });
    }
  };
  bindings = {
    flock: bind('int flock(int fd, int operation)', 'flock'),
    ioctlU64: bind('int ioctl(int fd, unsigned long request, _Out_ uint64_t *value)', 'ioctl'),
  };
  return bindings;
}

function lastErrno(): number {
  // koffi saves errno right after each native call, before JS can clobber it.
  return koffi.errno();
}

/**
 * Takes an exclusive, non-blocking flock on fd. Returns false when another process holds it.
 * The lock lives as long as the descriptor (and dies with the process, even on kill -9).
 */
export function tryLockExclusive(fd: number): boolean {
  for (;;) {
    if (libc().flock(fd, LOCK_EX | LOCK_NB) === 0) return true;
    const errno = lastErrno();
    if (errno === EINTR) continue;
    if (errno === EWOULDBLOCK) return false;
    throw new KilnError('KILN_INTERNAL', `flock failed with errno ${errno}`, { errno });
  }
}

export function unlock(fd: number): void {
  libc().flock(fd, LOCK_UN);
}

/** The size in bytes of the block device open on fd, read from the device (BLKGETSIZE64). */
export function blockDeviceSize(fd: number): number {
  const out: [bigint] = [0n];
  if (libc().ioctlU64(fd, BLKGETSIZE64, out) !== 0) {
    const errno = lastErrno();
    throw new KilnError('KILN_BAD_REQUEST', `BLKGETSIZE64 failed (errno ${errno}): not a block device?`, { errno });
  }
  return Number(out[0]);
}
