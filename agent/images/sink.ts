// Owns: writing a download's bytes to its .part file fast and with bounded memory: chunks are
// gathered (no copies) into ~1 MiB positioned writev calls on a raw fd, a few writes stay in
// flight while the next bytes arrive, and the page cache is flushed as we go so the final fsync
// is short. Must not: hash, or decide file names.
import { constants, fdatasync, ftruncate, fsync, open, close, writev } from 'node:fs';
import { promisify } from 'node:util';

const openP = promisify(open);
const closeP = promisify(close);
const ftruncateP = promisify(ftruncate);
const fsyncP = promisify(fsync);
const fdatasyncP = promisify(fdatasync);

function writevP(fd: number, buffers: Buffer[], position: number): Promise<number> {
  return new Promise((resolve, reject) => writev(fd, buffers, position, (err, n) => (err ? reject(err) : resolve(n))));
}

export interface SinkOptions {
  /** Bytes gathered before one writev. */
  batchBytes?: number;
  /** Bytes allowed in flight (submitted, not yet written) before write() makes the caller wait. */
  maxInFlightBytes?: number;
  /** Start a background fdatasync every this many bytes written (0: never). */
  flushEveryBytes?: number;
  /**
   * Told, after each background fdatasync, how many leading bytes are durable. Writes complete
   * out of order, so after a crash only this prefix is trusted (a later write may have landed
   * while an earlier one had not, leaving a hole).
   */
  onDurable?: (bytes: number) => void;
}

export class FileSink {
  private batch: Buffer[] = [];
  private batchSize = 0;
  private inFlight = 0;
  private error: unknown;
  private waiters: Array<() => void> = [];
  private pending = new Set<Promise<void>>();
  /** Start offsets of writes not yet completed (submission order = offset order). */
  private pendingStarts = new Set<number>();
  private sinceFlush = 0;
  private flushing: Promise<void> | undefined;
  private readonly batchBytes: number;
  private readonly maxInFlight: number;
  private readonly flushEvery: number;
  private readonly onDurable: ((bytes: number) => void) | undefined;

  private constructor(private readonly fd: number, public position: number, o: SinkOptions) {
    this.onDurable = o.onDurable;
    this.batchBytes = o.batchBytes ?? 1024 * 1024;
    this.maxInFlight = o.maxInFlightBytes ?? 8 * 1024 * 1024;
    this.flushEvery = o.flushEveryBytes ?? 64 * 1024 * 1024;
  }

  /** Opens (creating, 0600) `path` and truncates it to `keepBytes`, positioned after them. */
  static async open(path: string, keepBytes: number, o: SinkOptions = {}): Promise<FileSink> {
    const fd = await openP(path, constants.O_WRONLY | constants.O_CREAT, 0o600);
    try {
      await ftruncateP(fd, keepBytes);
    } catch (e) {
      await closeP(fd);
      throw e;
    }
    return new FileSink(fd, keepBytes, o);
  }

  /** Queues a chunk (kept by reference: the caller must not reuse it). Resolves when there is room for more. */
  write(chunk: Buffer): Promise<void> | undefined {
    if (this.error) return Promise.reject(this.error);
    this.batch.push(chunk);
    this.batchSize += chunk.length;
    if (this.batchSize >= this.batchBytes || this.batch.length >= 256) this.submit();
    if (this.inFlight >= this.maxInFlight) return new Promise<void>((r) => this.waiters.push(r)).then(() => this.check());
    return undefined;
  }

  /** Writes what is queued and waits for every write; rethrows the first write error. */
  async drain(): Promise<void> {
    this.submit();
    while (this.pending.size) await Promise.allSettled([...this.pending]);
    if (this.flushing) await this.flushing.catch(() => undefined);
    this.check();
  }

  /** Drops queued bytes and the file's tail beyond `size` (restart from zero). */
  async truncate(size: number): Promise<void> {
    this.batch = [];
    this.batchSize = 0;
    while (this.pending.size) await Promise.allSettled([...this.pending]);
    if (this.flushing) await this.flushing.catch(() => undefined);
    this.check();
    await ftruncateP(this.fd, size);
    this.position = size;
  }

  async sync(): Promise<void> {
    await this.drain();
    await fsyncP(this.fd);
  }

  async close(): Promise<void> {
    try {
      this.submit();
      while (this.pending.size) await Promise.allSettled([...this.pending]);
      if (this.flushing) await this.flushing.catch(() => undefined);
    } finally {
      await closeP(this.fd);
    }
  }

  private check(): void {
    if (this.error) throw this.error;
  }

  private submit(): void {
    if (!this.batchSize || this.error) return;
    const buffers = this.batch;
    const size = this.batchSize;
    const at = this.position;
    this.batch = [];
    this.batchSize = 0;
    this.position += size;
    this.inFlight += size;
    this.pendingStarts.add(at);
    const p = this.writeAll(buffers, size, at).then(
      () => {
        this.inFlight -= size;
        this.pendingStarts.delete(at);
        this.sinceFlush += size;
        if (this.flushEvery && this.sinceFlush >= this.flushEvery && !this.flushing) {
          this.sinceFlush = 0;
          // Every byte below the oldest unfinished write is in the page cache now.
          const contiguous = this.pendingStarts.size ? Math.min(...this.pendingStarts) : this.position;
          // Background write-back so dirty pages do not pile up for the final fsync.
          this.flushing = fdatasyncP(this.fd)
            .then(() => this.onDurable?.(contiguous))
            .catch(() => undefined)
            .finally(() => (this.flushing = undefined));
        }
        this.wake();
      },
      (e: unknown) => {
        this.inFlight -= size;
        this.pendingStarts.delete(at);
        this.error ??= e;
        this.wake();
      },
    );
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  private wake(): void {
    if (this.inFlight < this.maxInFlight || this.error) {
      const w = this.waiters;
      this.waiters = [];
      for (const r of w) r();
    }
  }

  private async writeAll(buffers: Buffer[], size: number, at: number): Promise<void> {
    let written = await writevP(this.fd, buffers, at);
    // Short writes are rare on regular files; finish the rest one buffer at a time.
    while (written < size) {
      let skip = written;
      const rest: Buffer[] = [];
      for (const b of buffers) {
        if (skip >= b.length) {
          skip -= b.length;
          continue;
        }
        rest.push(skip ? b.subarray(skip) : b);
        skip = 0;
      }
      const n = await writevP(this.fd, rest, at + written);
      if (n === 0) throw Object.assign(new Error('write returned 0 bytes'), { code: 'EIO' });
      written += n;
    }
  }
}
