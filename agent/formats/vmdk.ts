// Owns: parsing VMDK: the sparse extent header (KDMV), its embedded text descriptor, descriptor-
// only files and the old COWD format, and judging them: only monolithicSparse and
// streamOptimized, a capped descriptor whose every line matches a whitelist, no parent, exactly
// one SPARSE extent naming no path (CVE-2022-47951: a descriptor naming /etc/... or another
// image makes qemu read it). Must not: read grain tables or guest data.
import type { BoundedReader } from './source.js';
import { reason, type FormatReport } from './types.js';
import { hasBytes, isPowerOfTwo, printable, u16le, u32le, u64le } from './bytes.js';

const KDMV = Buffer.from('KDMV', 'latin1');
const COWD = Buffer.from('COWD', 'latin1');
/** Largest embedded or standalone descriptor accepted (VMware writes 10 KiB; qemu-img 10 KiB). */
export const VMDK_MAX_DESCRIPTOR_BYTES = 64 * 1024;
const ALLOWED_CREATE_TYPES = new Set(['monolithicSparse', 'streamOptimized']);
const MAX_LINE_REASONS = 5;
const DDB_KEYS = new Set([
  'virtualHWVersion', 'geometry.cylinders', 'geometry.heads', 'geometry.sectors', 'geometry.biosCylinders',
  'geometry.biosHeads', 'geometry.biosSectors', 'adapterType', 'toolsVersion', 'toolsInstallType',
  'uuid.image', 'uuid.parent', 'uuid.modification', 'uuid.parentmodification', 'longContentID',
  'thinProvisioned', 'deletable', 'encoding', 'uuid', 'comment', 'sidecars', 'virtualHWVersion.minimum',
]);

/** qemu's text probe: comment and blank lines, then a `version=N` line. */
export function looksLikeDescriptor(head: Buffer): boolean {
  const text = head.subarray(0, 4096).toString('latin1');
  for (const line of text.split('\n')) {
    const l = line.replace(/\r$/, '');
    if (l.startsWith('#') || l.trim() === '') continue;
    return /^version=[123]$/.test(l);
  }
  return false;
}

export function probeVmdk(head: Buffer): boolean {
  return hasBytes(head, 0, KDMV) || hasBytes(head, 0, COWD) || looksLikeDescriptor(head);
}

interface DescriptorFacts {
  createType?: string;
  extents: Array<{ access: string; sectors: number; type: string; file?: string }>;
}

/** Checks every line of a descriptor against the whitelist; appends reasons to `rep`. */
export function checkDescriptor(text: string, rep: FormatReport): DescriptorFacts {
  const facts: DescriptorFacts = { extents: [] };
  const bad = (code: string, message: string) => rep.reasons.push(reason(code, message));
  let lineReasons = 0;
  const lineBad = (n: number, line: string, why: string) => {
    if (lineReasons++ < MAX_LINE_REASONS) bad('vmdk.descriptor_line', `line ${n}: ${why}: "${printable(Buffer.from(line, 'latin1'), 80)}"`);
  };
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '').trim();
    const n = i + 1;
    if (line === '' || line.startsWith('#')) continue;
    let m: RegExpExecArray | null;
    if (/^version\s*=\s*[123]$/.test(line)) continue;
    if (/^encoding\s*=\s*"[A-Za-z0-9_-]{0,32}"$/.test(line)) continue;
    if (/^CID\s*=\s*[0-9a-fA-F]{1,8}$/.test(line)) continue;
    if (/^isNativeSnapshot\s*=\s*"no"$/.test(line)) continue;
    if ((m = /^parentCID\s*=\s*([0-9a-fA-F]{1,8})$/.exec(line))) {
      if (m[1]!.toLowerCase() !== 'ffffffff') bad('vmdk.parent', `parentCID=${m[1]} (the image has a parent)`);
      continue;
    }
    if (/^parentFileNameHint\s*=/.test(line)) {
      bad('vmdk.parent', `parentFileNameHint names a parent image: "${printable(Buffer.from(line, 'latin1'), 80)}"`);
      continue;
    }
    if ((m = /^createType\s*=\s*"([^"]*)"$/.exec(line))) {
      if (facts.createType !== undefined) lineBad(n, line, 'second createType');
      facts.createType = m[1]!;
      continue;
    }
    if ((m = /^(RW|RDONLY|NOACCESS)\s+(\d{1,20})\s+([A-Z]+)(?:\s+"([^"]*)"(?:\s+(\d{1,20}))?)?$/.exec(line))) {
      const extent: DescriptorFacts['extents'][number] = { access: m[1]!, sectors: Number(m[2]), type: m[3]! };
      if (m[4] !== undefined) extent.file = m[4];
      facts.extents.push(extent);
      continue;
    }
    if ((m = /^ddb\.([A-Za-z0-9.]+)\s*=\s*"([^"\\]*)"$/.exec(line))) {
      if (!DDB_KEYS.has(m[1]!)) lineBad(n, line, `ddb key "${m[1]}" is not whitelisted`);
      continue;
    }
    lineBad(n, line, 'not a whitelisted descriptor line');
  }
  if (lineReasons > MAX_LINE_REASONS) bad('vmdk.descriptor_line', `${lineReasons - MAX_LINE_REASONS} more lines not whitelisted`);
  if (facts.createType === undefined) bad('vmdk.create_type', 'the descriptor has no createType');
  else if (!ALLOWED_CREATE_TYPES.has(facts.createType)) {
    bad('vmdk.create_type', `createType "${printable(Buffer.from(facts.createType, 'latin1'), 40)}" (only monolithicSparse and streamOptimized)`);
  }
  if (facts.extents.length !== 1) bad('vmdk.extents', `${facts.extents.length} extents (a monolithic image has exactly one)`);
  for (const e of facts.extents) {
    if (e.type !== 'SPARSE') bad('vmdk.extents', `extent type ${e.type} (only SPARSE)`);
    if (e.file !== undefined && (/[/\\]/.test(e.file) || e.file.includes('..') || e.file.includes(':') || e.file === '')) {
      bad('vmdk.extent_path', `extent file "${printable(Buffer.from(e.file, 'latin1'), 80)}" is a path`);
    }
  }
  rep.details.createType = facts.createType;
  return facts;
}

export async function parseVmdk(r: BoundedReader, head: Buffer): Promise<FormatReport> {
  const rep: FormatReport = { format: 'vmdk', virtualSize: undefined, reasons: [], details: {} };
  const bad = (code: string, message: string) => rep.reasons.push(reason(code, message));
  const range = (message: string) => bad('vmdk.header_range', message);

  if (hasBytes(head, 0, COWD)) {
    rep.details.createType = 'vmfsSparse (COWD)';
    bad('vmdk.create_type', 'VMware 3 COWD sparse format (only monolithicSparse and streamOptimized)');
    const sectors = u32le(head, 12);
    if (sectors !== undefined) rep.virtualSize = sectors * 512;
    return rep;
  }

  if (!hasBytes(head, 0, KDMV)) {
    // A descriptor-only file: all its data lives in other files it names.
    rep.details.descriptorOnly = true;
    bad('vmdk.descriptor_file', 'a descriptor-only VMDK refers to extents in other files');
    const size = r.size;
    if (size !== undefined && size > VMDK_MAX_DESCRIPTOR_BYTES) bad('vmdk.descriptor_size', `descriptor file of ${size} bytes (cap ${VMDK_MAX_DESCRIPTOR_BYTES})`);
    const text = await r.read(0, VMDK_MAX_DESCRIPTOR_BYTES);
    const facts = checkDescriptor(cutAtNul(text), rep);
    rep.virtualSize = facts.extents.reduce((n, e) => n + e.sectors * 512, 0);
    return rep;
  }

  const version = u32le(head, 4);
  if (head.length < 512 || version === undefined) {
    bad('vmdk.truncated', `${head.length} bytes: too short for a VMDK sparse header (512 bytes)`);
    return rep;
  }
  const flags = u32le(head, 8)!;
  const capacity = u64le(head, 12)!;
  const grainSize = u64le(head, 20)!;
  const descOffset = u64le(head, 28)!;
  const descSize = u64le(head, 36)!;
  const gtes = u32le(head, 44)!;
  const compress = u16le(head, 77)!;
  rep.details.version = version;
  rep.details.flags = flags;
  rep.details.compressAlgorithm = compress;
  rep.virtualSize = Number.isSafeInteger(capacity * 512) ? capacity * 512 : Infinity;

  if (version < 1 || version > 3) bad('vmdk.version', `sparse header version ${version} (1..3)`);
  // capacity 0 makes qemu treat the embedded descriptor as a descriptor file with extents.
  if (capacity === 0) range('capacity 0 (qemu would follow the embedded descriptor\'s extents)');
  if (!Number.isSafeInteger(capacity * 512)) range(`capacity ${capacity} sectors`);
  if (!isPowerOfTwo(grainSize) || grainSize > 65536) range(`grain size ${grainSize} sectors`);
  if (gtes === 0 || gtes > 512) range(`${gtes} entries per grain table (1..512)`);
  if (compress > 1) range(`compression algorithm ${compress}`);

  if (descOffset === 0 || descSize === 0) {
    bad('vmdk.no_descriptor', 'no embedded descriptor: the subformat cannot be verified');
    return rep;
  }
  if (!Number.isSafeInteger(descSize * 512) || descSize * 512 > VMDK_MAX_DESCRIPTOR_BYTES) {
    bad('vmdk.descriptor_size', `embedded descriptor of ${descSize} sectors (cap ${VMDK_MAX_DESCRIPTOR_BYTES / 512})`);
    return rep;
  }
  const fileSize = r.size;
  if (!Number.isSafeInteger(descOffset * 512) || (fileSize !== undefined && descOffset * 512 + descSize * 512 > fileSize)) {
    range(`descriptor at sector ${descOffset} (+${descSize}) lies outside the file`);
    return rep;
  }
  const text = await r.read(descOffset * 512, descSize * 512);
  const facts = checkDescriptor(cutAtNul(text), rep);
  for (const e of facts.extents) {
    if (e.sectors !== capacity) range(`extent of ${e.sectors} sectors differs from the header capacity ${capacity}`);
  }
  return rep;
}

function cutAtNul(b: Buffer): string {
  const nul = b.indexOf(0);
  return (nul >= 0 ? b.subarray(0, nul) : b).toString('latin1');
}
