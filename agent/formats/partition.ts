// Owns: recognising raw disks that carry a partition table: GPT ("EFI PART" in LBA 1, for 512-
// and 4096-byte sectors) and MBR (boot signature plus a sane partition table with at least one
// partition). Both are raw images to qemu. Must not: judge partitions' contents.
import type { BoundedReader } from './source.js';
import type { FormatReport } from './types.js';
import { hasBytes, u32le, u64le, u8 } from './bytes.js';

export function gptSectorSize(head: Buffer): 512 | 4096 | undefined {
  for (const sector of [512, 4096] as const) {
    if (!hasBytes(head, sector, 'EFI PART')) continue;
    const headerSize = u32le(head, sector + 12);
    const myLba = u64le(head, sector + 24);
    if (headerSize !== undefined && headerSize >= 92 && headerSize <= sector && myLba === 1) return sector;
  }
  return undefined;
}

export function probeGpt(head: Buffer): boolean {
  return gptSectorSize(head) !== undefined;
}

export function probeMbr(head: Buffer): boolean {
  if (u8(head, 510) !== 0x55 || u8(head, 511) !== 0xaa) return false;
  let used = 0;
  for (let i = 0; i < 4; i++) {
    const e = 446 + i * 16;
    const status = u8(head, e)!;
    if (status !== 0 && status !== 0x80) return false;
    if (u8(head, e + 4) !== 0) used++;
  }
  return used > 0;
}

export async function parsePartitioned(r: BoundedReader, head: Buffer, format: 'gpt' | 'mbr'): Promise<FormatReport> {
  const rep: FormatReport = { format, virtualSize: r.size, reasons: [], details: {} };
  if (format === 'gpt') {
    const sector = gptSectorSize(head)!;
    rep.details.sectorSize = sector;
    rep.details.partitionEntries = u32le(head, sector + 80);
  } else {
    const types: string[] = [];
    for (let i = 0; i < 4; i++) {
      const t = u8(head, 446 + i * 16 + 4)!;
      if (t) types.push(`0x${t.toString(16).padStart(2, '0')}`);
    }
    rep.details.partitionTypes = types;
  }
  return rep;
}
