// Owns: where the inspector's bytes come from: a buffer, a file (positional reads, never the
// whole file), or a download in progress (the head and tail windows a stream keeps), and the
// budget that caps how many bytes one inspection may read.
// Must not: interpret bytes (the format parsers do), or hold file handles beyond one inspection.
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { KilnError } from '../errors.js';

/** Random access to an image's bytes. `read` returns fewer bytes only at the end of the data. */
export interface ByteSource {
  /** Total bytes, when known (a file's size; a finished stream's length). */
  readonly size: number | undefined;
  read(offset: number, length: number): Promise<Buffer>;
}

/** Thrown by a source when the inspection asked for more than its budget; becomes a reason. */
export class ReadBudgetExceeded extends KilnError {
  constructor(budget: number, wanted: number) {
    super('KILN_IMAGE_UNSAFE', `image inspection would read more than ${budget} bytes`, { budget, wanted });
  }
}

/** Thrown by a stream window when the bytes asked for were not kept; the caller decides later. */
export class OutsideWindow extends KilnError {
  constructor(offset: number, length: number) {
    super('KILN_IMAGE_UNSAFE', `bytes ${offset}+${length} are outside the inspected window`, { offset, length });
  }
}

export function bufferSource(buf: Buffer): ByteSource {
  return {
    size: buf.length,
    async read(offset, length) {
      if (offset >= buf.length || length <= 0) return Buffer.alloc(0);
      return buf.subarray(offset, Math.min(buf.length, offset + length));
    },
  };
}

/** Opens `path` for positional reads; call close() when done. KILN_NOT_FOUND when it is missing. */
export async function openFileSource(path: string): Promise<ByteSource & { close(): Promise<void> }> {
  let fh: FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new KilnError('KILN_NOT_FOUND', `no such image file: ${path}`, { path });
    throw new KilnError('KILN_BAD_REQUEST', `cannot open ${path}: ${(e as Error).message}`, { path, errno: code });
  }
  try {
    const st = await fh.stat();
    let size = st.size;
    if (st.isBlockDevice()) {
      // A block device reports size 0 in stat; its end is where reads stop.
      size = await blockDeviceSize(fh);
    } else if (!st.isFile()) {
      throw new KilnError('KILN_BAD_REQUEST', `${path} is neither a file nor a block device`, { path });
    }
    return {
      size,
      async read(offset, length) {
        const want = Math.max(0, Math.min(length, size - offset));
        if (want === 0) return Buffer.alloc(0);
        const buf = Buffer.alloc(want);
        let got = 0;
        while (got < want) {
          const { bytesRead } = await fh.read(buf, got, want - got, offset + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        return got === want ? buf : buf.subarray(0, got);
      },
      close: () => fh.close(),
    };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** Size of a block device: binary search for the last readable byte (no ioctl needed). */
async function blockDeviceSize(fh: FileHandle): Promise<number> {
  const one = Buffer.alloc(1);
  const readable = async (off: number) => (await fh.read(one, 0, 1, off)).bytesRead === 1;
  let lo = 0;
  let hi = 1;
  while (hi < 2 ** 52 && (await readable(hi - 1))) hi *= 2;
  lo = hi / 2;
  while (lo < hi) {
    const mid = Math.floor((lo + hi + 1) / 2);
    if (await readable(mid - 1)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * The reader parsers use: clamps reads to the data, counts bytes, and refuses to go past the
 * budget (ReadBudgetExceeded), so a hostile header cannot make the inspector read unbounded bytes.
 */
export class BoundedReader {
  bytesRead = 0;
  constructor(private readonly source: ByteSource, readonly budget: number) {}

  get size(): number | undefined {
    return this.source.size;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length <= 0) return Buffer.alloc(0);
    const size = this.source.size;
    const want = size === undefined ? length : Math.max(0, Math.min(length, size - offset));
    if (want === 0) return Buffer.alloc(0);
    if (this.bytesRead + want > this.budget) throw new ReadBudgetExceeded(this.budget, this.bytesRead + want);
    this.bytesRead += want;
    const buf = await this.source.read(offset, want);
    return buf.length > want ? buf.subarray(0, want) : buf;
  }
}

/**
 * Keeps what an inspection of a download needs while the bytes pass by: the first `headBytes`
 * and the last `tailBytes` (a VHD footer lives at the very end). Memory stays bounded by the
 * two windows whatever the download's length.
 */
export class StreamWindow {
  private head: Buffer;
  private headLen = 0;
  private tailChunks: Buffer[] = [];
  private tailLen = 0;
  private total = 0;
  private ended = false;

  constructor(readonly headBytes = 4 * 1024 * 1024, readonly tailBytes = 64 * 1024) {
    this.head = Buffer.alloc(headBytes);
  }

  get bytesSeen(): number {
    return this.total;
  }

  get headFull(): boolean {
    return this.headLen === this.headBytes;
  }

  write(chunk: Buffer): void {
    if (this.ended) throw new KilnError('KILN_INTERNAL', 'write after end of the inspected stream');
    if (this.headLen < this.headBytes) {
      const n = Math.min(chunk.length, this.headBytes - this.headLen);
      chunk.copy(this.head, this.headLen, 0, n);
      this.headLen += n;
    }
    this.total += chunk.length;
    if (this.tailBytes > 0) {
      const keep = chunk.length > this.tailBytes ? chunk.subarray(chunk.length - this.tailBytes) : chunk;
      this.tailChunks.push(Buffer.from(keep));
      this.tailLen += keep.length;
      while (this.tailChunks.length > 1 && this.tailLen - this.tailChunks[0]!.length >= this.tailBytes) {
        this.tailLen -= this.tailChunks.shift()!.length;
      }
    }
  }

  end(): void {
    this.ended = true;
  }

  /** A source over the kept bytes; `size` is known once the stream ended. */
  source(): ByteSource {
    const head = this.head.subarray(0, this.headLen);
    const tail = Buffer.concat(this.tailChunks);
    const total = this.total;
    const ended = this.ended;
    const tailStart = total - tail.length;
    return {
      size: ended ? total : undefined,
      async read(offset, length) {
        if (ended && offset >= total) return Buffer.alloc(0);
        const end = ended ? Math.min(total, offset + length) : offset + length;
        if (end <= head.length) return head.subarray(offset, end);
        if (ended && offset >= tailStart) return tail.subarray(offset - tailStart, end - tailStart);
        if (ended && offset < head.length && tailStart <= head.length) {
          // The windows overlap or touch: the whole stream is in memory.
          return Buffer.concat([head.subarray(offset), tail.subarray(head.length - tailStart)]).subarray(0, end - offset);
        }
        throw new OutsideWindow(offset, length);
      },
    };
  }
}
