// Owns: bounds-checked integer and string reads from header buffers. Every helper returns
// undefined past the end of the buffer instead of throwing, so parsers can say "truncated".
// 64-bit values come back as numbers; values beyond 2^53 come back as Infinity, which fails
// every range check (no silent precision loss). Must not: do I/O.

export function u8(b: Buffer, off: number): number | undefined {
  return off >= 0 && off + 1 <= b.length ? b[off]! : undefined;
}
export function u16le(b: Buffer, off: number): number | undefined {
  return off >= 0 && off + 2 <= b.length ? b.readUInt16LE(off) : undefined;
}
export function u16be(b: Buffer, off: number): number | undefined {
  return off >= 0 && off + 2 <= b.length ? b.readUInt16BE(off) : undefined;
}
export function u32le(b: Buffer, off: number): number | undefined {
  return off >= 0 && off + 4 <= b.length ? b.readUInt32LE(off) : undefined;
}
export function u32be(b: Buffer, off: number): number | undefined {
  return off >= 0 && off + 4 <= b.length ? b.readUInt32BE(off) : undefined;
}
function big(v: bigint): number {
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(v);
}
export function u64le(b: Buffer, off: number): number | undefined {
  return off >= 0 && off + 8 <= b.length ? big(b.readBigUInt64LE(off)) : undefined;
}
export function u64be(b: Buffer, off: number): number | undefined {
  return off >= 0 && off + 8 <= b.length ? big(b.readBigUInt64BE(off)) : undefined;
}
export function u64beBig(b: Buffer, off: number): bigint | undefined {
  return off >= 0 && off + 8 <= b.length ? b.readBigUInt64BE(off) : undefined;
}
export function u64leBig(b: Buffer, off: number): bigint | undefined {
  return off >= 0 && off + 8 <= b.length ? b.readBigUInt64LE(off) : undefined;
}

/** True when `b` holds exactly `sig` at `off`. */
export function hasBytes(b: Buffer, off: number, sig: Buffer | string): boolean {
  const s = typeof sig === 'string' ? Buffer.from(sig, 'latin1') : sig;
  return off >= 0 && off + s.length <= b.length && b.subarray(off, off + s.length).equals(s);
}

/** Printable rendering of untrusted bytes for messages: latin1, control characters escaped, capped. */
export function printable(b: Buffer, max = 120): string {
  const text = b.subarray(0, max).toString('latin1').replace(/[\x00-\x1f\x7f-\xff\\]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return b.length > max ? text + '…' : text;
}

export function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && Number.isInteger(Math.log2(n));
}

/** Mixed-endian GUID (first three fields little-endian), as VHDX and GPT store them. */
export function guid(b: Buffer, off: number): string | undefined {
  if (off < 0 || off + 16 > b.length) return undefined;
  const hex = (s: number, e: number, rev: boolean) => {
    const part = Buffer.from(b.subarray(off + s, off + e));
    return (rev ? part.reverse() : part).toString('hex');
  };
  return `${hex(0, 4, true)}-${hex(4, 6, true)}-${hex(6, 8, true)}-${hex(8, 10, false)}-${hex(10, 16, false)}`.toUpperCase();
}
