// Owns: parsing LUKS headers (qemu's "luks" driver reads LUKS1). Judges: version 1 only, header
// complete, payload inside the file. The virtual size is what follows the payload offset.
// Must not: touch key material.
import type { BoundedReader } from './source.js';
import { reason, type FormatReport } from './types.js';
import { hasBytes, u16be, u32be } from './bytes.js';

const MAGIC = Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]); // "LUKS\xba\xbe"
const LUKS1_HEADER = 592;

export function probeLuks(head: Buffer): boolean {
  return hasBytes(head, 0, MAGIC);
}

const cstr = (b: Buffer) => {
  const nul = b.indexOf(0);
  return (nul >= 0 ? b.subarray(0, nul) : b).toString('latin1').replace(/[^\x20-\x7e]/g, '?');
};

export async function parseLuks(r: BoundedReader, head: Buffer): Promise<FormatReport> {
  const rep: FormatReport = { format: 'luks', virtualSize: undefined, reasons: [], details: {} };
  const version = u16be(head, 6);
  rep.details.version = version;
  if (version !== 1) {
    rep.reasons.push(reason('luks.version', `LUKS version ${version} (qemu reads LUKS1 only)`));
    return rep;
  }
  if (head.length < LUKS1_HEADER) {
    rep.reasons.push(reason('luks.truncated', `${head.length} bytes: too short for a LUKS1 header (${LUKS1_HEADER} bytes)`));
    return rep;
  }
  rep.details.cipher = `${cstr(head.subarray(8, 40))}-${cstr(head.subarray(40, 72))}`;
  rep.details.hash = cstr(head.subarray(72, 104));
  const payloadOffset = u32be(head, 104)! * 512;
  rep.details.payloadOffset = payloadOffset;
  const size = r.size;
  if (size !== undefined) {
    if (payloadOffset < LUKS1_HEADER || payloadOffset > size) rep.reasons.push(reason('luks.header_range', `payload offset ${payloadOffset} outside the file`));
    else rep.virtualSize = size - payloadOffset;
  }
  return rep;
}
