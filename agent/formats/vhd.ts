// Owns: parsing VHD (qemu's "vpc"): the 512-byte "conectix" footer (a copy at the start for
// dynamic disks, only at the end for fixed ones) and the dynamic disk header. Judges: no
// differencing disks (they name a parent), disk type and table sizes in range. Computes the
// virtual size the way qemu does (CHS geometry or current_size, by creator application).
// Must not: read the block allocation table or guest data.
import type { BoundedReader } from './source.js';
import { reason, type FormatReport } from './types.js';
import { hasBytes, isPowerOfTwo, u16be, u32be, u64be, u8 } from './bytes.js';

const COOKIE = 'conectix';
const FOOTER = 512;
const TYPE_FIXED = 2;
const TYPE_DYNAMIC = 3;
const TYPE_DIFFERENCING = 4;
const VHD_MAX_GEOMETRY = 65535 * 16 * 255;

export function probeVhdStart(head: Buffer): boolean {
  return hasBytes(head, 0, COOKIE);
}

export function probeVhdEnd(tail: Buffer | undefined): boolean {
  return tail !== undefined && tail.length === FOOTER && hasBytes(tail, 0, COOKIE);
}

/** qemu's rule: Virtual PC and old qemu use CHS geometry, others current_size. */
function vhdVirtualSize(footer: Buffer): number | undefined {
  const creator = footer.subarray(28, 32).toString('latin1');
  const cyls = u16be(footer, 56);
  const heads = u8(footer, 58);
  const spt = u8(footer, 59);
  const current = u64be(footer, 48);
  if (cyls === undefined || heads === undefined || spt === undefined || current === undefined) return undefined;
  const chsSectors = cyls * heads * spt;
  const useChs = !['win ', 'qem2', 'd2v ', 'CTXS', 'tap\0'].includes(creator);
  if (!useChs || chsSectors === VHD_MAX_GEOMETRY) return Math.floor(current / 512) * 512;
  return chsSectors * 512;
}

export async function parseVhd(r: BoundedReader, head: Buffer, tail: Buffer | undefined): Promise<FormatReport> {
  const rep: FormatReport = { format: 'vhd', virtualSize: undefined, reasons: [], details: {} };
  const bad = (code: string, message: string) => rep.reasons.push(reason(code, message));
  const range = (message: string) => bad('vhd.header_range', message);
  const atStart = probeVhdStart(head);
  const footer = atStart ? head.subarray(0, FOOTER) : tail!;
  rep.details.footerAt = atStart ? 'start' : 'end';
  if (footer.length < FOOTER) {
    bad('vhd.truncated', `${footer.length} bytes: too short for a VHD footer (512 bytes)`);
    return rep;
  }
  const diskType = u32be(footer, 60)!;
  const dataOffset = u64be(footer, 16)!;
  rep.details.creator = footer.subarray(28, 32).toString('latin1').replace(/[^\x20-\x7e]/g, '?');
  rep.details.diskType = diskType === TYPE_FIXED ? 'fixed' : diskType === TYPE_DYNAMIC ? 'dynamic' : diskType === TYPE_DIFFERENCING ? 'differencing' : diskType;
  rep.virtualSize = vhdVirtualSize(footer);
  if (diskType === TYPE_DIFFERENCING) bad('vhd.differencing', 'a differencing VHD names a parent image');
  else if (diskType !== TYPE_FIXED && diskType !== TYPE_DYNAMIC) range(`disk type ${diskType} (2 fixed, 3 dynamic)`);

  if (diskType === TYPE_DYNAMIC || diskType === TYPE_DIFFERENCING) {
    const size = r.size;
    if (!Number.isSafeInteger(dataOffset) || (size !== undefined && dataOffset + 1024 > size)) {
      range(`dynamic header offset ${dataOffset} lies outside the file`);
      return rep;
    }
    const dyn = await r.read(dataOffset, 1024);
    if (!hasBytes(dyn, 0, 'cxsparse')) {
      range(`no dynamic disk header ("cxsparse") at ${dataOffset}`);
      return rep;
    }
    const maxTableEntries = u32be(dyn, 28)!;
    const blockSize = u32be(dyn, 32)!;
    rep.details.blockSize = blockSize;
    if (!isPowerOfTwo(blockSize) || blockSize < 512) range(`block size ${blockSize}`);
    if (maxTableEntries > 2 ** 29) range(`${maxTableEntries} table entries`);
    if (rep.virtualSize !== undefined && maxTableEntries * blockSize < rep.virtualSize) range('the block table is too small for the disk size');
  } else if (atStart && r.size !== undefined && r.size >= FOOTER) {
    // A fixed disk carries its footer at the end; a start-only "fixed" footer is forged.
    const end = await r.read(r.size - FOOTER, FOOTER);
    if (!hasBytes(end, 0, COOKIE)) range('fixed VHD without a footer at the end');
  }
  return rep;
}
