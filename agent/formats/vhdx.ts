// Owns: parsing VHDX: file identifier, the two headers (CRC-32C, higher sequence wins), the
// region table and the metadata table. Judges: no parent (HasParent flag or parent locator), no
// pending log (qemu would replay it, writing to the image), no unknown required region or
// metadata item, sizes in range. Must not: read the BAT or payload blocks.
import type { BoundedReader } from './source.js';
import { reason, type FormatReport } from './types.js';
import { guid, hasBytes, isPowerOfTwo, isZero, u16le, u32le, u64le } from './bytes.js';
import { crc32cWithZeroField } from './crc32c.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const HEADER_OFFSETS = [64 * KiB, 128 * KiB];
const REGION_OFFSETS = [192 * KiB, 256 * KiB];
const REGION_TABLE_BYTES = 64 * KiB;
const METADATA_TABLE_BYTES = 64 * KiB;
const BAT_GUID = '2DC27766-F623-4200-9D64-115E9BFD4A08';
const METADATA_GUID = '8B7CA206-4790-4B9A-B8FE-575F050F886E';
const FILE_PARAMETERS = 'CAA16737-FA36-4D43-B3B6-33F0AA44E76B';
const VIRTUAL_DISK_SIZE = '2FA54224-CD1B-4876-B211-5DBED83BF4B8';
const PAGE83 = 'BECA12AB-B2E6-4523-93EF-C309E000C746';
const LOGICAL_SECTOR = '8141BF1D-A96F-4709-BA47-F233A8FAAB5F';
const PHYSICAL_SECTOR = 'CDA348C7-445D-4471-9CC9-E9885251C556';
const PARENT_LOCATOR = 'A8D35F2D-B30B-454D-ABF7-D3D84834AB0C';
const KNOWN_METADATA = new Set([FILE_PARAMETERS, VIRTUAL_DISK_SIZE, PAGE83, LOGICAL_SECTOR, PHYSICAL_SECTOR, PARENT_LOCATOR]);
const MAX_VHDX_SIZE = 64 * 1024 ** 4;

export function probeVhdx(head: Buffer): boolean {
  return hasBytes(head, 0, 'vhdxfile');
}

export async function parseVhdx(r: BoundedReader): Promise<FormatReport> {
  const rep: FormatReport = { format: 'vhdx', virtualSize: undefined, reasons: [], details: {} };
  const bad = (code: string, message: string) => rep.reasons.push(reason(code, message));
  const range = (message: string) => bad('vhdx.header_range', message);

  // Headers: take the valid one with the higher sequence number.
  let current: Buffer | undefined;
  let seq = -1;
  for (const off of HEADER_OFFSETS) {
    const h = await r.read(off, 4 * KiB);
    if (h.length < 4 * KiB || !hasBytes(h, 0, 'head')) continue;
    if (crc32cWithZeroField(h, 4) !== u32le(h, 4)) continue;
    const s = u64le(h, 8)!;
    if (s > seq) {
      seq = s;
      current = h;
    }
  }
  if (!current) {
    bad('vhdx.header', 'no valid VHDX header (signature and CRC-32C) at 64 KiB or 128 KiB');
    return rep;
  }
  const version = u16le(current, 66)!;
  rep.details.version = version;
  if (version !== 1) range(`header version ${version}`);
  if (!isZero(current.subarray(48, 64))) bad('vhdx.log', 'the log is not empty (qemu would replay it into the image)');

  let table: Buffer | undefined;
  for (const off of REGION_OFFSETS) {
    const t = await r.read(off, REGION_TABLE_BYTES);
    if (t.length === REGION_TABLE_BYTES && hasBytes(t, 0, 'regi') && crc32cWithZeroField(t, 4) === u32le(t, 4)) {
      table = t;
      break;
    }
  }
  if (!table) {
    bad('vhdx.header', 'no valid region table at 192 KiB or 256 KiB');
    return rep;
  }
  const entries = u32le(table, 8)!;
  if (entries > 2047) {
    range(`${entries} region table entries (2047 max)`);
    return rep;
  }
  let metadata: { offset: number; length: number } | undefined;
  let hasBat = false;
  for (let i = 0; i < entries; i++) {
    const e = 16 + i * 32;
    const id = guid(table, e)!;
    const offset = u64le(table, e + 16)!;
    const length = u32le(table, e + 24)!;
    const required = (u32le(table, e + 28)! & 1) === 1;
    if (offset % MiB !== 0 || length % MiB !== 0 || offset < MiB) range(`region ${id} at ${offset} (+${length}) is not MiB-aligned`);
    if (id === METADATA_GUID) metadata = { offset, length };
    else if (id === BAT_GUID) hasBat = true;
    else if (required) bad('vhdx.region', `unknown required region ${id}`);
  }
  if (!metadata || !hasBat) {
    bad('vhdx.header', 'the region table lacks the metadata region or the BAT');
    return rep;
  }
  if (!Number.isSafeInteger(metadata.offset) || (r.size !== undefined && metadata.offset + METADATA_TABLE_BYTES > r.size)) {
    range(`metadata region at ${metadata.offset} lies outside the file`);
    return rep;
  }
  const meta = await r.read(metadata.offset, METADATA_TABLE_BYTES);
  if (!hasBytes(meta, 0, 'metadata')) {
    bad('vhdx.header', `no metadata table at ${metadata.offset}`);
    return rep;
  }
  const items = u16le(meta, 10)!;
  if (items > 2047) {
    range(`${items} metadata entries (2047 max)`);
    return rep;
  }
  let blockSize: number | undefined;
  for (let i = 0; i < items; i++) {
    const e = 32 + i * 32;
    const id = guid(meta, e);
    const offset = u32le(meta, e + 16);
    const length = u32le(meta, e + 20);
    const flags = u32le(meta, e + 24);
    if (id === undefined || offset === undefined || length === undefined || flags === undefined) break;
    const required = (flags & 4) !== 0;
    if (id === PARENT_LOCATOR) {
      bad('vhdx.parent', 'a parent locator names a parent image');
      continue;
    }
    if (!KNOWN_METADATA.has(id)) {
      if (required) bad('vhdx.metadata', `unknown required metadata item ${id}`);
      continue;
    }
    if (id !== FILE_PARAMETERS && id !== VIRTUAL_DISK_SIZE) continue;
    if (length < 8 || length > 4096 || offset < 64 * KiB || offset + length > metadata.length) {
      range(`metadata item ${id} at ${offset} (+${length}) lies outside the metadata region`);
      continue;
    }
    const data = await r.read(metadata.offset + offset, 8);
    if (data.length < 8) {
      bad('vhdx.truncated', `the file ends inside metadata item ${id}`);
      continue;
    }
    if (id === FILE_PARAMETERS) {
      blockSize = data.readUInt32LE(0);
      if ((data.readUInt32LE(4) & 2) !== 0) bad('vhdx.parent', 'file parameters say the disk has a parent');
    } else {
      rep.virtualSize = u64le(data, 0);
    }
  }
  rep.details.blockSize = blockSize;
  if (blockSize === undefined || !isPowerOfTwo(blockSize) || blockSize < MiB || blockSize > 256 * MiB) range(`block size ${blockSize}`);
  if (rep.virtualSize === undefined) bad('vhdx.header', 'no virtual disk size in the metadata');
  else if (rep.virtualSize > MAX_VHDX_SIZE) range(`virtual size ${rep.virtualSize} beyond the VHDX maximum`);
  return rep;
}
