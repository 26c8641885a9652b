// Hand-crafted image headers for the inspector's unit and property tests: small, valid-looking
// images of every format built byte by byte (no programs, no binary fixtures).
import { crc32c } from '../../../agent/formats/crc32c.js';

const KiB = 1024;
const MiB = 1024 * KiB;

export interface Qcow2Spec {
  version?: number;
  size?: number;
  clusterBits?: number;
  backing?: string;
  dataFile?: string;
  incompatible?: bigint;
  cryptMethod?: number;
  fileBytes?: number;
  compressionType?: number;
}

/** A qcow2 of `fileBytes` (default 4 clusters): header, refcount table, L1 in the right places. */
export function qcow2(s: Qcow2Spec = {}): Buffer {
  const version = s.version ?? 3;
  const clusterBits = s.clusterBits ?? 16;
  const cluster = 2 ** clusterBits;
  const size = s.size ?? 64 * MiB;
  const b = Buffer.alloc(s.fileBytes ?? 4 * cluster);
  b.writeUInt32BE(0x514649fb, 0);
  b.writeUInt32BE(version, 4);
  b.writeUInt32BE(clusterBits, 20);
  b.writeBigUInt64BE(BigInt(size), 24);
  b.writeUInt32BE(s.cryptMethod ?? 0, 32);
  const l2Cover = cluster * (cluster / 8);
  b.writeUInt32BE(Math.max(1, Math.ceil(size / l2Cover)), 36);
  b.writeBigUInt64BE(BigInt(3 * cluster), 40);
  b.writeBigUInt64BE(BigInt(cluster), 48);
  b.writeUInt32BE(1, 56);
  let off = 72;
  if (version === 3) {
    b.writeBigUInt64BE(s.incompatible ?? 0n, 72);
    b.writeUInt32BE(4, 96);
    const headerLength = s.compressionType !== undefined ? 112 : 104;
    b.writeUInt32BE(headerLength, 100);
    if (s.compressionType !== undefined) b[104] = s.compressionType;
    off = headerLength;
  }
  if (s.dataFile !== undefined) {
    const name = Buffer.from(s.dataFile, 'latin1');
    b.writeUInt32BE(0x44415441, off);
    b.writeUInt32BE(name.length, off + 4);
    name.copy(b, off + 8);
    off += 8 + Math.ceil(name.length / 8) * 8;
  }
  b.writeUInt32BE(0, off); // end of extensions
  if (s.backing !== undefined) {
    const name = Buffer.from(s.backing, 'latin1');
    const at = off + 8;
    name.copy(b, at);
    b.writeBigUInt64BE(BigInt(at), 8);
    b.writeUInt32BE(name.length, 16);
  }
  return b;
}

export const VMDK_DESCRIPTOR = [
  '# Disk DescriptorFile', 'version=1', 'CID=12345678', 'parentCID=ffffffff', 'createType="monolithicSparse"', '',
  '# Extent description', 'RW 131072 SPARSE "disk.vmdk"', '', '# The Disk Data Base', '#DDB', '',
  'ddb.virtualHWVersion = "4"', 'ddb.geometry.cylinders = "130"', 'ddb.geometry.heads = "16"', 'ddb.geometry.sectors = "63"', 'ddb.adapterType = "ide"', '',
].join('\n');

/** A monolithicSparse VMDK header with an embedded descriptor at sector 1. */
export function vmdk(descriptor = VMDK_DESCRIPTOR, o: { capacity?: number; descSectors?: number; fileBytes?: number } = {}): Buffer {
  const b = Buffer.alloc(o.fileBytes ?? 64 * KiB);
  b.write('KDMV', 0, 'latin1');
  b.writeUInt32LE(1, 4);
  b.writeUInt32LE(3, 8);
  b.writeBigUInt64LE(BigInt(o.capacity ?? 131072), 12);
  b.writeBigUInt64LE(128n, 20);
  b.writeBigUInt64LE(1n, 28);
  b.writeBigUInt64LE(BigInt(o.descSectors ?? 20), 36);
  b.writeUInt32LE(512, 44);
  b.writeBigUInt64LE(21n, 48);
  b.writeBigUInt64LE(30n, 56);
  b.writeBigUInt64LE(128n, 64);
  b.write('\n \r\n', 73, 'latin1');
  Buffer.from(descriptor, 'latin1').copy(b, 512, 0, Math.min(descriptor.length, 20 * 512));
  return b;
}

/** A VHD footer (512 bytes). */
export function vhdFooter(o: { type?: number; size?: number; creator?: string; dataOffset?: bigint } = {}): Buffer {
  const f = Buffer.alloc(512);
  const size = o.size ?? 8 * MiB;
  f.write('conectix', 0, 'latin1');
  f.writeUInt32BE(2, 8);
  f.writeUInt32BE(0x00010000, 12);
  f.writeBigUInt64BE(o.dataOffset ?? (o.type === 2 ? 0xffffffffffffffffn : 512n), 16);
  f.write(o.creator ?? 'qem2', 28, 'latin1');
  f.writeBigUInt64BE(BigInt(size), 40);
  f.writeBigUInt64BE(BigInt(size), 48);
  f.writeUInt16BE(1024, 56);
  f[58] = 16;
  f[59] = 63;
  f.writeUInt32BE(o.type ?? 3, 60);
  return f;
}

/** A dynamic VHD: footer copy, dynamic header, BAT, footer. */
export function vhdDynamic(o: { type?: number; size?: number } = {}): Buffer {
  const footer = vhdFooter({ type: o.type ?? 3, size: o.size ?? 8 * MiB });
  const dyn = Buffer.alloc(1024);
  dyn.write('cxsparse', 0, 'latin1');
  dyn.writeBigUInt64BE(0xffffffffffffffffn, 8);
  dyn.writeBigUInt64BE(1536n, 16);
  dyn.writeUInt32BE(0x00010000, 24);
  dyn.writeUInt32BE(4, 28);
  dyn.writeUInt32BE(2 * MiB, 32);
  const bat = Buffer.alloc(512, 0xff);
  return Buffer.concat([footer, dyn, bat, footer]);
}

/** A fixed VHD: raw data, then the footer. */
export function vhdFixed(data: Buffer): Buffer {
  return Buffer.concat([data, vhdFooter({ type: 2, size: data.length })]);
}

const guidBytes = (g: string) => {
  const h = g.replace(/-/g, '');
  const b = Buffer.from(h, 'hex');
  return Buffer.concat([Buffer.from(b.subarray(0, 4)).reverse(), Buffer.from(b.subarray(4, 6)).reverse(), Buffer.from(b.subarray(6, 8)).reverse(), b.subarray(8)]);
};

/** A VHDX with valid CRCs: file id, two headers, two region tables, a metadata table. */
export function vhdx(o: { size?: number; hasParent?: boolean; logGuid?: boolean; unknownRequired?: boolean } = {}): Buffer {
  const b = Buffer.alloc(3 * MiB);
  b.write('vhdxfile', 0, 'latin1');
  for (const [i, off] of [64 * KiB, 128 * KiB].entries()) {
    const h = b.subarray(off, off + 4 * KiB);
    h.write('head', 0, 'latin1');
    h.writeBigUInt64LE(BigInt(i + 1), 8);
    if (o.logGuid) h.fill(0x42, 48, 64);
    h.writeUInt16LE(1, 66);
    h.writeUInt32LE(MiB, 68);
    h.writeBigUInt64LE(BigInt(MiB), 72);
    h.writeUInt32LE(crc32c(h), 4);
  }
  for (const off of [192 * KiB, 256 * KiB]) {
    const t = b.subarray(off, off + 64 * KiB);
    t.write('regi', 0, 'latin1');
    const entries: Array<[string, number, number, number]> = [
      ['2DC27766-F623-4200-9D64-115E9BFD4A08', 2 * MiB, MiB, 1],
      ['8B7CA206-4790-4B9A-B8FE-575F050F886E', MiB, MiB, 1],
    ];
    if (o.unknownRequired) entries.push(['11111111-2222-3333-4444-555555555555', 2 * MiB, MiB, 1]);
    t.writeUInt32LE(entries.length, 8);
    entries.forEach(([g, fo, len, req], i) => {
      const e = 16 + i * 32;
      guidBytes(g).copy(t, e);
      t.writeBigUInt64LE(BigInt(fo), e + 16);
      t.writeUInt32LE(len, e + 24);
      t.writeUInt32LE(req, e + 28);
    });
    t.writeUInt32LE(crc32c(t), 4);
  }
  const m = b.subarray(MiB, 2 * MiB);
  m.write('metadata', 0, 'latin1');
  const items: Array<[string, Buffer]> = [
    ['CAA16737-FA36-4D43-B3B6-33F0AA44E76B', (() => { const d = Buffer.alloc(8); d.writeUInt32LE(32 * MiB, 0); d.writeUInt32LE(o.hasParent ? 2 : 0, 4); return d; })()],
    ['2FA54224-CD1B-4876-B211-5DBED83BF4B8', (() => { const d = Buffer.alloc(8); d.writeBigUInt64LE(BigInt(o.size ?? 64 * MiB), 0); return d; })()],
    ['8141BF1D-A96F-4709-BA47-F233A8FAAB5F', (() => { const d = Buffer.alloc(4); d.writeUInt32LE(512, 0); return d; })()],
  ];
  m.writeUInt16LE(items.length, 10);
  items.forEach(([g, data], i) => {
    const e = 32 + i * 32;
    guidBytes(g).copy(m, e);
    const at = 64 * KiB + i * 64;
    m.writeUInt32LE(at, e + 16);
    m.writeUInt32LE(data.length, e + 20);
    m.writeUInt32LE(4, e + 24);
    data.copy(m, at);
  });
  return b;
}

/** A dynamic VDI header (512 bytes) plus a block map. */
export function vdi(o: { type?: number; size?: number; parent?: boolean } = {}): Buffer {
  const size = o.size ?? 8 * MiB;
  const blocks = Math.ceil(size / MiB);
  const b = Buffer.alloc(2048);
  b.write('<<< QEMU VM Virtual Disk Image >>>\n', 0, 'latin1');
  b.writeUInt32LE(0xbeda107f, 0x40);
  b.writeUInt32LE(0x00010001, 0x44);
  b.writeUInt32LE(0x190, 0x48);
  b.writeUInt32LE(o.type ?? 1, 0x4c);
  b.writeUInt32LE(512, 0x154);
  b.writeUInt32LE(1024, 0x158);
  b.writeUInt32LE(512, 0x168);
  b.writeBigUInt64LE(BigInt(size), 0x170);
  b.writeUInt32LE(MiB, 0x178);
  b.writeUInt32LE(blocks, 0x180);
  if (o.parent) b.fill(0x22, 0x1b8, 0x1c8);
  return b;
}

export function qed(o: { backing?: string } = {}): Buffer {
  const b = Buffer.alloc(64 * KiB);
  b.write('QED\0', 0, 'latin1');
  b.writeUInt32LE(64 * KiB, 4);
  b.writeUInt32LE(4, 8);
  b.writeUInt32LE(1, 12);
  b.writeBigUInt64LE(BigInt(4 * 64 * KiB), 40);
  b.writeBigUInt64LE(BigInt(1024 * MiB), 48);
  if (o.backing) {
    b.writeBigUInt64LE(1n, 16);
    b.writeUInt32LE(1024, 56);
    b.writeUInt32LE(o.backing.length, 60);
    b.write(o.backing, 1024, 'latin1');
  }
  return b;
}

export function luks(o: { version?: number; payloadSectors?: number; dataBytes?: number } = {}): Buffer {
  const payload = o.payloadSectors ?? 4040;
  const b = Buffer.alloc(payload * 512 + (o.dataBytes ?? MiB));
  Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]).copy(b, 0);
  b.writeUInt16BE(o.version ?? 1, 6);
  b.write('aes', 8, 'latin1');
  b.write('xts-plain64', 40, 'latin1');
  b.write('sha256', 72, 'latin1');
  b.writeUInt32BE(payload, 104);
  b.writeUInt32BE(64, 108);
  return b;
}

export function iso(sectors = 40): Buffer {
  const b = Buffer.alloc(sectors * 2048);
  const pvd = 16 * 2048;
  b[pvd] = 1;
  b.write('CD001', pvd + 1, 'latin1');
  b[pvd + 6] = 1;
  b.write('TESTVOL', pvd + 40, 'latin1');
  b.writeUInt32LE(sectors, pvd + 80);
  b.writeUInt16LE(2048, pvd + 128);
  b[17 * 2048] = 255;
  b.write('CD001', 17 * 2048 + 1, 'latin1');
  return b;
}

export function mbr(b: Buffer, type = 0x83, status = 0x80): Buffer {
  b.fill(0, 446, 510);
  b[446] = status;
  b[450] = type;
  b.writeUInt32LE(2048, 454);
  b.writeUInt32LE(2048, 458);
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

export function gpt(b: Buffer): Buffer {
  mbr(b, 0xee, 0);
  b.write('EFI PART', 512, 'latin1');
  b.writeUInt32LE(92, 512 + 12);
  b.writeBigUInt64LE(1n, 512 + 24);
  b.writeUInt32LE(128, 512 + 80);
  b.writeUInt32LE(128, 512 + 84);
  return b;
}

/** Every seed the property tests mutate. */
export function seeds(): Array<[string, Buffer]> {
  return [
    ['qcow2', qcow2()],
    ['qcow2-v2', qcow2({ version: 2 })],
    ['qcow2-backing', qcow2({ backing: 'base.img' })],
    ['qcow2-datafile', qcow2({ dataFile: '/d.raw', incompatible: 4n })],
    ['vmdk', vmdk()],
    ['vhd', vhdDynamic()],
    ['vhd-fixed', vhdFixed(Buffer.alloc(64 * KiB))],
    ['vhdx', vhdx()],
    ['vdi', vdi()],
    ['qed', qed({ backing: 'b.qcow2' })],
    ['luks', luks({ dataBytes: 4096 })],
    ['iso', iso()],
    ['gpt', gpt(Buffer.alloc(64 * KiB))],
    ['mbr', mbr(Buffer.alloc(8 * KiB))],
    ['descriptor', Buffer.from(VMDK_DESCRIPTOR.replace('monolithicSparse', 'monolithicFlat').replace('SPARSE', 'FLAT'), 'latin1')],
  ];
}
