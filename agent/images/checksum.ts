// Owns: checksum strings ('sha256:HEX', 'sha512:HEX', weak md5/sha1 only when allowed), the
// hashers that run over a download's bytes (sha256 always: the cache is addressed by it), and
// re-hashing a file from disk (resume, `kiln cache verify`).
// Must not: fetch, or decide where files live.
import { createHash, type Hash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { KilnError } from '../errors.js';

export type ChecksumAlgo = 'sha256' | 'sha512' | 'sha1' | 'md5';

const HEX_LENGTH: Record<ChecksumAlgo, number> = { sha256: 64, sha512: 128, sha1: 40, md5: 32 };
const STRONG: ReadonlySet<ChecksumAlgo> = new Set(['sha256', 'sha512']);

export interface Checksum {
  algo: ChecksumAlgo;
  hex: string;
}

export function formatChecksum(c: Checksum): string {
  return `${c.algo}:${c.hex}`;
}

/**
 * Parses `ALGO:HEX`. Unknown algorithms, and md5/sha1 unless `allowWeak`, are KILN_CHECKSUM_ALGO;
 * a malformed hex part is KILN_BAD_REQUEST.
 */
export function parseChecksum(input: string, o: { allowWeak: boolean }): Checksum {
  const m = /^([A-Za-z0-9-]+):(.*)$/.exec(input.trim());
  if (!m) throw new KilnError('KILN_BAD_REQUEST', `checksum "${input.slice(0, 200)}" must look like sha256:HEX or sha512:HEX`, { field: 'checksum' });
  const algo = m[1]!.toLowerCase().replace('-', '') as ChecksumAlgo;
  if (!(algo in HEX_LENGTH)) {
    throw new KilnError('KILN_CHECKSUM_ALGO', `checksum algorithm "${m[1]}" is not supported (use sha256 or sha512)`, { algo: m[1], allowed: ['sha256', 'sha512'] });
  }
  if (!STRONG.has(algo) && !o.allowWeak) {
    throw new KilnError('KILN_CHECKSUM_ALGO', `checksum algorithm ${algo} is refused as weak (use sha256 or sha512, or set allowWeakChecksums)`, { algo, allowed: ['sha256', 'sha512'] });
  }
  const hex = m[2]!.toLowerCase();
  if (hex.length !== HEX_LENGTH[algo] || !/^[0-9a-f]+$/.test(hex)) {
    throw new KilnError('KILN_BAD_REQUEST', `checksum ${algo} needs ${HEX_LENGTH[algo]} hex digits`, { field: 'checksum', algo });
  }
  return { algo, hex };
}

/** sha256 plus, when asked, one more algorithm, fed the same Buffer chunks (no copies). */
export class Hashers {
  private sha256: Hash;
  private extra: Hash | undefined;
  constructor(readonly extraAlgo?: ChecksumAlgo) {
    this.sha256 = createHash('sha256');
    this.extra = extraAlgo && extraAlgo !== 'sha256' ? createHash(extraAlgo) : undefined;
  }
  update(chunk: Buffer): void {
    this.sha256.update(chunk);
    this.extra?.update(chunk);
  }
  reset(): void {
    this.sha256 = createHash('sha256');
    this.extra = this.extraAlgo && this.extraAlgo !== 'sha256' ? createHash(this.extraAlgo) : undefined;
  }
  /** Final digests: always sha256, plus the extra algorithm. Ends the hashers. */
  digests(): Partial<Record<ChecksumAlgo, string>> & { sha256: string } {
    const sha256 = this.sha256.digest('hex');
    const out: Partial<Record<ChecksumAlgo, string>> & { sha256: string } = { sha256 };
    if (this.extra && this.extraAlgo) out[this.extraAlgo] = this.extra.digest('hex');
    return out;
  }
}

const READ_CHUNK = 4 * 1024 * 1024;

/**
 * Feeds the first `length` bytes of a file into `hashers` (all of it when length is undefined).
 * Returns the number of bytes hashed. Two buffers alternate so the next read overlaps hashing.
 */
export async function hashFileInto(path: string, hashers: { update(b: Buffer): void }, length?: number, onBytes?: (done: number) => void): Promise<number> {
  const fh = await open(path, 'r');
  try {
    const limit = length ?? (await fh.stat()).size;
    const bufs = [Buffer.allocUnsafe(READ_CHUNK), Buffer.allocUnsafe(READ_CHUNK)];
    let pos = 0;
    let which = 0;
    let pending = limit > 0 ? fh.read(bufs[0]!, 0, Math.min(READ_CHUNK, limit), 0) : undefined;
    while (pending) {
      const { bytesRead, buffer } = await pending;
      if (bytesRead === 0) break;
      pos += bytesRead;
      which ^= 1;
      pending = pos < limit ? fh.read(bufs[which]!, 0, Math.min(READ_CHUNK, limit - pos), pos) : undefined;
      hashers.update(buffer.subarray(0, bytesRead));
      onBytes?.(pos);
    }
    return pos;
  } finally {
    await fh.close();
  }
}
