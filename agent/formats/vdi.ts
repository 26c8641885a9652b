// Owns: parsing VirtualBox VDI headers. Judges: version 1.1, dynamic or static only (differencing
// and undo images have parents), no parent/link UUID, 1 MiB blocks, aligned offsets, a block map
// large enough for the disk size (qemu's own checks). Must not: read the block map or data.
import type { BoundedReader } from './source.js';
import { reason, type FormatReport } from './types.js';
import { isZero, u32le, u64le } from './bytes.js';

const SIGNATURE = 0xbeda107f;
const VERSION_1_1 = 0x00010001;
const HEADER_BYTES = 512;

export function probeVdi(head: Buffer): boolean {
  return u32le(head, 0x40) === SIGNATURE;
}

export async function parseVdi(_r: BoundedReader, head: Buffer): Promise<FormatReport> {
  const rep: FormatReport = { format: 'vdi', virtualSize: undefined, reasons: [], details: {} };
  const bad = (code: string, message: string) => rep.reasons.push(reason(code, message));
  const range = (message: string) => bad('vdi.header_range', message);
  if (head.length < HEADER_BYTES) {
    bad('vdi.truncated', `${head.length} bytes: too short for a VDI header (512 bytes)`);
    return rep;
  }
  const version = u32le(head, 0x44)!;
  const imageType = u32le(head, 0x4c)!;
  const offsetBmap = u32le(head, 0x154)!;
  const offsetData = u32le(head, 0x158)!;
  const sectorSize = u32le(head, 0x168)!;
  const diskSize = u64le(head, 0x170)!;
  const blockSize = u32le(head, 0x178)!;
  const blockExtra = u32le(head, 0x17c)!;
  const blocksInImage = u32le(head, 0x180)!;
  rep.virtualSize = diskSize;
  rep.details.version = `${version >>> 16}.${version & 0xffff}`;
  rep.details.imageType = imageType === 1 ? 'dynamic' : imageType === 2 ? 'static' : imageType;
  if (version !== VERSION_1_1) bad('vdi.version', `version ${rep.details.version} (1.1 only)`);
  if (imageType === 3 || imageType === 4) bad('vdi.parent', `image type ${imageType === 3 ? 'undo' : 'differencing'} has a parent`);
  else if (imageType !== 1 && imageType !== 2) range(`image type ${imageType}`);
  if (!isZero(head.subarray(0x1a8, 0x1c8))) bad('vdi.parent', 'link/parent UUID is set');
  if (offsetBmap % 512 !== 0 || offsetData % 512 !== 0 || offsetBmap < HEADER_BYTES || offsetData < offsetBmap) range(`block map/data offsets ${offsetBmap}/${offsetData}`);
  if (sectorSize !== 512) range(`sector size ${sectorSize}`);
  if (blockSize !== 1024 * 1024) range(`block size ${blockSize} (1 MiB only)`);
  if (blockExtra !== 0) range(`block extra ${blockExtra}`);
  if (blocksInImage > 0x3fffffff || !Number.isSafeInteger(diskSize) || diskSize > blocksInImage * blockSize) range(`disk size ${diskSize} exceeds ${blocksInImage} blocks`);
  return rep;
}
