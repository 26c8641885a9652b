// Owns: parsing qcow2 (v2, v3) headers and header extensions and judging them: no backing file
// of any kind, no external data file, no unknown incompatible feature bits, version 2 or 3,
// header fields and offsets in range (the limits qemu itself enforces, checked before qemu-img
// ever sees the file). Must not: read guest data clusters or L1/L2 tables.
import type { BoundedReader } from './source.js';
import { reason, type FormatReport } from './types.js';
import { hasBytes, printable, u32be, u64be, u64beBig, u8 } from './bytes.js';
import { backingKind } from './backing.js';

export const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]); // "QFI\xfb"

const V2_HEADER = 72;
const V3_HEADER_MIN = 104;
/** Incompatible feature bits qemu 7.2 knows: dirty, corrupt, external data file, compression type, extended L2. */
const KNOWN_INCOMPATIBLE = 0x1fn;
const INCOMPAT_CORRUPT = 0x2n;
const INCOMPAT_DATA_FILE = 0x4n;
const EXT_END = 0;
const EXT_BACKING_FORMAT = 0xe2792aca;
const EXT_FEATURE_TABLE = 0x6803f857;
const EXT_BITMAPS = 0x23852875;
const EXT_CRYPTO = 0x0537be77;
const EXT_DATA_FILE = 0x44415441;
const MAX_EXTENSIONS = 256;
/** qemu's QCOW_MAX_L1_SIZE (32 MiB of entries) and QCOW_MAX_REFTABLE_SIZE (8 MiB). */
const MAX_L1_BYTES = 32 * 1024 * 1024;
const MAX_REFTABLE_BYTES = 8 * 1024 * 1024;
const MAX_SNAPSHOTS = 65536;
/** Bytes of the first cluster read for header extensions (the largest cluster is 2 MiB). */
const MAX_HEADER_CLUSTER_READ = 2 * 1024 * 1024;

export function probeQcow2(head: Buffer): boolean {
  return hasBytes(head, 0, QCOW2_MAGIC);
}

export async function parseQcow2(r: BoundedReader, head: Buffer): Promise<FormatReport> {
  const rep: FormatReport = { format: 'qcow2', virtualSize: undefined, reasons: [], details: {} };
  const bad = (code: string, message: string) => rep.reasons.push(reason(code, message));
  const range = (message: string) => bad('qcow2.header_range', message);

  const version = u32be(head, 4);
  rep.details.version = version;
  if (version === undefined) {
    bad('qcow2.truncated', `${head.length} bytes: too short for a qcow2 header (${V2_HEADER} bytes)`);
    return rep;
  }
  if (version !== 2 && version !== 3) bad('qcow2.version', `version ${version} (only 2 and 3 are accepted)`);

  // The backing file fields come first, so even a truncated header is judged on them.
  const backingOffset = u64be(head, 8);
  const backingSize = u32be(head, 16);
  const clusterBits = u32be(head, 20);
  const clusterSize = clusterBits !== undefined && clusterBits >= 9 && clusterBits <= 21 ? 2 ** clusterBits : undefined;
  if (clusterBits !== undefined && clusterSize === undefined) range(`cluster_bits ${clusterBits} outside 9..21`);
  rep.details.clusterSize = clusterSize;

  if ((backingOffset !== undefined && backingOffset !== 0) || (backingSize !== undefined && backingSize !== 0)) {
    let name = '';
    if (backingOffset !== undefined && backingSize !== undefined && backingSize > 0 && backingSize <= 1023 && backingOffset + backingSize <= (clusterSize ?? 65536)) {
      name = (await r.read(backingOffset, backingSize)).toString('latin1');
    }
    const kind = name ? backingKind(name) : 'unreadable';
    rep.backing = { name, kind };
    bad('qcow2.backing_file', name ? `backing file "${printable(Buffer.from(name, 'latin1'))}" (${kind})` : `backing file declared at offset ${backingOffset} (+${backingSize} bytes), unreadable`);
    if (backingSize !== undefined && backingSize > 1023) range(`backing file name of ${backingSize} bytes (qemu allows 1023)`);
    if (backingOffset !== undefined && backingSize !== undefined && clusterSize !== undefined && backingOffset + backingSize > clusterSize) {
      range(`backing file name at ${backingOffset}+${backingSize} lies outside the first cluster`);
    }
  }

  const headerNeeded = version === 3 ? V3_HEADER_MIN : V2_HEADER;
  if (head.length < headerNeeded) {
    bad('qcow2.truncated', `${head.length} bytes: too short for a qcow2 v${version} header (${headerNeeded} bytes)`);
    const size = u64be(head, 24);
    if (size !== undefined) rep.virtualSize = size;
    return rep;
  }

  const size = u64be(head, 24)!;
  rep.virtualSize = size;
  const cryptMethod = u32be(head, 32)!;
  const l1Size = u32be(head, 36)!;
  const l1Offset = u64be(head, 40)!;
  const refOffset = u64be(head, 48)!;
  const refClusters = u32be(head, 56)!;
  const nbSnapshots = u32be(head, 60)!;
  const snapOffset = u64be(head, 64)!;
  rep.details.snapshots = nbSnapshots;

  if (!Number.isSafeInteger(size)) range('virtual size beyond 2^53 bytes');
  if (cryptMethod !== 0) bad('qcow2.encrypted', `encryption method ${cryptMethod} (encrypted images need secrets kiln does not hold)`);

  let headerLength = V2_HEADER;
  if (version === 3) {
    const incompatible = u64beBig(head, 72)!;
    const compatible = u64beBig(head, 80)!;
    const autoclear = u64beBig(head, 88)!;
    const refcountOrder = u32be(head, 96)!;
    headerLength = u32be(head, 100)!;
    rep.details.incompatibleFeatures = `0x${incompatible.toString(16)}`;
    rep.details.compatibleFeatures = `0x${compatible.toString(16)}`;
    rep.details.autoclearFeatures = `0x${autoclear.toString(16)}`;
    const unknown = incompatible & ~KNOWN_INCOMPATIBLE;
    if (unknown !== 0n) bad('qcow2.incompatible_features', `unknown incompatible feature bits 0x${unknown.toString(16)}`);
    if (incompatible & INCOMPAT_DATA_FILE) bad('qcow2.data_file', 'incompatible feature "external data file" is set');
    if (incompatible & INCOMPAT_CORRUPT) bad('qcow2.corrupt', 'the image is marked corrupt');
    if (refcountOrder > 6) range(`refcount_order ${refcountOrder} > 6`);
    if (headerLength < V3_HEADER_MIN || headerLength % 8 !== 0 || (clusterSize !== undefined && headerLength > clusterSize)) {
      range(`header_length ${headerLength} (needs 104..cluster size, a multiple of 8)`);
    }
    if (headerLength > V3_HEADER_MIN) {
      const compressionType = u8(head, 104);
      rep.details.compressionType = compressionType === 1 ? 'zstd' : compressionType === 0 ? 'zlib' : compressionType;
      if (compressionType !== undefined && compressionType > 1) bad('qcow2.compression_type', `compression type ${compressionType} (zlib and zstd only)`);
    }
  }

  if (clusterSize !== undefined) {
    const fileSize = r.size;
    const aligned = (n: number) => Number.isSafeInteger(n) && n % clusterSize === 0;
    const inFile = (n: number) => fileSize === undefined || n < fileSize;
    // L1 table: aligned, within qemu's cap, large enough for the virtual size, inside the file.
    const l2Entries = clusterSize / 8;
    const needL1 = Number.isSafeInteger(size) ? Math.ceil(size / (clusterSize * l2Entries)) : Infinity;
    if (l1Size * 8 > MAX_L1_BYTES) range(`L1 table of ${l1Size} entries exceeds qemu's limit`);
    if (l1Size < needL1) range(`L1 table of ${l1Size} entries is too small for ${size} bytes`);
    if (l1Size > 0 && (!aligned(l1Offset) || l1Offset === 0 || !inFile(l1Offset))) range(`L1 table offset ${l1Offset} is not a cluster inside the file`);
    if (!aligned(refOffset) || refOffset === 0 || !inFile(refOffset)) range(`refcount table offset ${refOffset} is not a cluster inside the file`);
    if (refClusters === 0 || refClusters * clusterSize > MAX_REFTABLE_BYTES) range(`refcount table of ${refClusters} clusters`);
    if (nbSnapshots > MAX_SNAPSHOTS) range(`${nbSnapshots} snapshots (qemu allows ${MAX_SNAPSHOTS})`);
    if (nbSnapshots > 0 && (!aligned(snapOffset) || snapOffset === 0 || !inFile(snapOffset))) range(`snapshot table offset ${snapOffset} is not a cluster inside the file`);

    await parseExtensions(r, head, rep, headerLength, backingOffset && backingOffset > 0 ? Math.min(backingOffset, clusterSize) : clusterSize);
  }
  return rep;
}

async function parseExtensions(r: BoundedReader, head: Buffer, rep: FormatReport, start: number, end: number): Promise<void> {
  const range = (message: string) => rep.reasons.push(reason('qcow2.header_range', message));
  const limit = Math.min(end, MAX_HEADER_CLUSTER_READ);
  const area = head.length >= limit ? head.subarray(0, limit) : await r.read(0, limit);
  let off = start;
  let unknown = 0;
  for (let i = 0; ; i++) {
    if (i >= MAX_EXTENSIONS) {
      range(`more than ${MAX_EXTENSIONS} header extensions`);
      break;
    }
    if (off + 8 > end) break; // no room for another extension: qemu stops here too
    const type = u32be(area, off);
    const len = u32be(area, off + 4);
    if (type === undefined || len === undefined) {
      rep.reasons.push(reason('qcow2.truncated', `the file ends inside the header extensions (offset ${off})`));
      break;
    }
    if (type === EXT_END) break;
    const dataEnd = off + 8 + len;
    if (dataEnd > end) {
      range(`header extension 0x${type.toString(16)} of ${len} bytes runs past the header area`);
      break;
    }
    const data = area.subarray(off + 8, Math.min(dataEnd, area.length));
    if (data.length < len) {
      rep.reasons.push(reason('qcow2.truncated', `the file ends inside header extension 0x${type.toString(16)}`));
      break;
    }
    switch (type) {
      case EXT_BACKING_FORMAT:
        rep.details.backingFormat = printable(data, 32);
        if (rep.backing) rep.backing.format = data.toString('latin1');
        break;
      case EXT_DATA_FILE: {
        const name = data.toString('latin1');
        rep.dataFile = name;
        rep.reasons.push(reason('qcow2.data_file', `external data file "${printable(data)}" (${backingKind(name)})`));
        break;
      }
      case EXT_CRYPTO:
        rep.details.cryptoHeader = true;
        break;
      case EXT_FEATURE_TABLE:
      case EXT_BITMAPS:
        break;
      default:
        unknown++;
    }
    off = dataEnd + ((8 - (len % 8)) % 8);
  }
  if (unknown) rep.details.unknownExtensions = unknown;
}
