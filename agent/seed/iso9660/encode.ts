// Owns: the byte-level encodings ECMA-119 uses: both-endian integers, the 7-byte directory-record
// date, the 17-byte volume descriptor date, space-padded a/d-character and UCS-2 text fields.
// Must not: know about directories, layout or Rock Ridge (writer.ts and rockridge.ts do).

export const SECTOR = 2048;

/** 32-bit number stored little-endian then big-endian (ECMA-119 7.3.3). */
export function both32(value: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(value, 0);
  b.writeUInt32BE(value, 4);
  return b;
}

/** 16-bit number stored little-endian then big-endian (ECMA-119 7.2.3). */
export function both16(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt16LE(value, 0);
  b.writeUInt16BE(value, 2);
  return b;
}

/** Recording date of a directory record (ECMA-119 9.1.5), always UTC (offset 0). */
export function recordDate(date: Date): Buffer {
  return Buffer.from([
    date.getUTCFullYear() - 1900,
    date.getUTCMonth() + 1,
    date.getUTCDate(),
    date.getUTCHours(),
    date.getUTCMinutes(),
    date.getUTCSeconds(),
    0,
  ]);
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/** Volume descriptor date "YYYYMMDDHHMMSScc" + UTC offset byte (ECMA-119 8.4.26.1). */
export function volumeDate(date: Date | null): Buffer {
  if (date === null) {
    // "Not specified": sixteen ASCII zeros and a zero offset.
    return Buffer.concat([Buffer.from('0000000000000000', 'latin1'), Buffer.from([0])]);
  }
  const text =
    String(date.getUTCFullYear()).padStart(4, '0') +
    pad2(date.getUTCMonth() + 1) +
    pad2(date.getUTCDate()) +
    pad2(date.getUTCHours()) +
    pad2(date.getUTCMinutes()) +
    pad2(date.getUTCSeconds()) +
    pad2(Math.floor(date.getUTCMilliseconds() / 10));
  return Buffer.concat([Buffer.from(text, 'latin1'), Buffer.from([0])]);
}

/** An ASCII field padded with spaces to its width (the caller has validated the characters). */
export function asciiField(text: string, width: number): Buffer {
  const b = Buffer.alloc(width, 0x20);
  b.write(text.slice(0, width), 0, 'latin1');
  return b;
}

/** UCS-2 big-endian encoding of a string whose code units are all in the BMP. */
export function ucs2be(text: string): Buffer {
  const b = Buffer.alloc(text.length * 2);
  for (let i = 0; i < text.length; i++) b.writeUInt16BE(text.charCodeAt(i), i * 2);
  return b;
}

/** A Joliet text field: UCS-2 BE, padded with UCS-2 spaces (0x0020) to its width in bytes. */
export function ucs2Field(text: string, width: number): Buffer {
  const b = Buffer.alloc(width);
  for (let i = 0; i + 1 < width; i += 2) b.writeUInt16BE(0x0020, i);
  const chars = Math.min(text.length, Math.floor(width / 2));
  for (let i = 0; i < chars; i++) b.writeUInt16BE(text.charCodeAt(i), i * 2);
  return b;
}

export function sectorsFor(bytes: number): number {
  return Math.ceil(bytes / SECTOR);
}
