// Owns: recognising ISO 9660 images (volume descriptors from sector 16) and reading the primary
// volume descriptor's size. Must not: read directories or files.
import type { BoundedReader } from './source.js';
import { reason, type FormatReport } from './types.js';
import { hasBytes, u16le, u32le, u8 } from './bytes.js';

export const ISO_DESCRIPTORS_AT = 16 * 2048;
const MAX_DESCRIPTORS = 16;

export function probeIso(head: Buffer): boolean {
  return hasBytes(head, ISO_DESCRIPTORS_AT + 1, 'CD001');
}

export async function parseIso(r: BoundedReader, head: Buffer): Promise<FormatReport> {
  const rep: FormatReport = { format: 'iso', virtualSize: r.size, reasons: [], details: {} };
  const area = head.length >= ISO_DESCRIPTORS_AT + MAX_DESCRIPTORS * 2048 ? head : await r.read(0, ISO_DESCRIPTORS_AT + MAX_DESCRIPTORS * 2048);
  let primary = false;
  for (let i = 0; i < MAX_DESCRIPTORS; i++) {
    const off = ISO_DESCRIPTORS_AT + i * 2048;
    if (!hasBytes(area, off + 1, 'CD001')) break;
    const type = u8(area, off);
    if (type === 255) break;
    if (type === 0) rep.details.bootRecord = true;
    if (type === 1 && !primary) {
      primary = true;
      const blocks = u32le(area, off + 80);
      const blockSize = u16le(area, off + 128);
      rep.details.volumeBytes = blocks !== undefined && blockSize !== undefined ? blocks * blockSize : undefined;
      rep.details.volumeId = area.subarray(off + 40, off + 72).toString('latin1').trim().replace(/[^\x20-\x7e]/g, '?');
    }
  }
  if (!primary) rep.reasons.push(reason('iso.header', 'no primary volume descriptor'));
  return rep;
}
