// Owns: CRC-32C (Castagnoli), as VHDX checksums its headers and region tables. Must not: do I/O.
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(buf: Buffer, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < buf.length; i++) c = TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** The CRC of `block` with its 4-byte checksum field at `at` taken as zero. */
export function crc32cWithZeroField(block: Buffer, at: number): number {
  const copy = Buffer.from(block);
  copy.fill(0, at, at + 4);
  return crc32c(copy);
}
