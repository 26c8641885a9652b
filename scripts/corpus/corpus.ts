// Owns: the image safety test corpus: every rule of the inspector and of images/safety.ts with at
// least one malicious and one benign case, each made at run time by qemu-img (through kiln's
// wrapper, agent/tools/qemu-img.ts) or by hand-crafting/patching header bytes here. Nothing
// binary is committed; buildCorpus(dir) writes the files and returns what each must yield.
// Must not: spawn programs itself, or depend on other areas' modules (a corpus must stay stable).
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { KilnErrorCode } from '../../agent/errors.js';
import type { KilnFormat } from '../../agent/formats/types.js';
import type { QemuImg } from '../../agent/tools/qemu-img.js';

export type Rule =
  | 'multiple-formats' | 'declared-format' | 'qcow2-backing' | 'qcow2-data-file' | 'qcow2-incompatible'
  | 'qcow2-version' | 'qcow2-range' | 'qcow2-encrypted' | 'vmdk-subformat' | 'vmdk-descriptor' | 'vmdk-extent-path'
  | 'qed' | 'optional-formats' | 'short-file' | 'virtual-size' | 'qemu-img-cross-check' | 'parents';

export interface CorpusCase {
  name: string;
  rule: Rule;
  kind: 'malicious' | 'benign';
  declaredFormat?: string;
  /** Policy override; the default is kiln's default config (raw, qcow2, vmdk, iso; 2 TiB). */
  allowedFormats?: string[];
  maxVirtualSize?: number;
  expect: {
    format: KilnFormat;
    /** Error code for a refusal; absent for accepted images. */
    code?: KilnErrorCode;
    /** A reason code that must be among details.reasons. */
    reason?: string;
  };
}

const KiB = 1024;
const MiB = 1024 * KiB;
const ALL_OPTIONAL = ['raw', 'qcow2', 'vmdk', 'iso', 'vhd', 'vhdx', 'vdi', 'luks'];

// ---- byte helpers -------------------------------------------------------------------------

function put32be(b: Buffer, off: number, v: number): void { b.writeUInt32BE(v >>> 0, off); }
function put64be(b: Buffer, off: number, v: number | bigint): void { b.writeBigUInt64BE(BigInt(v), off); }
async function patch(path: string, fn: (b: Buffer) => Buffer | void): Promise<void> {
  const b = await readFile(path);
  const out = fn(b) ?? b;
  await writeFile(path, out);
}

/** A raw disk image with recognisable, non-zero content. */
function rawData(bytes: number, fill = 0x5a): Buffer {
  const b = Buffer.alloc(bytes, 0);
  for (let off = 0; off < bytes; off += 64 * KiB) b.fill(fill, off, Math.min(bytes, off + 4 * KiB));
  b.write('kiln corpus raw disk', 0, 'latin1');
  return b;
}

/** MBR partition table in a 512-byte sector: one partition of `type`, boot signature. */
function writeMbr(b: Buffer, type: number, status = 0x80, startLba = 2048, sectors = 2048): void {
  const e = 446;
  b.fill(0, 446, 510);
  b[e] = status;
  b[e + 4] = type;
  b.writeUInt32LE(startLba, e + 8);
  b.writeUInt32LE(sectors, e + 12);
  b[510] = 0x55;
  b[511] = 0xaa;
}

/** Protective MBR + GPT header (LBA 1) + one partition entry (LBA 2). */
function writeGpt(b: Buffer): void {
  const lbas = Math.floor(b.length / 512);
  writeMbr(b, 0xee, 0x00, 1, Math.min(lbas - 1, 0xffffffff));
  const h = 512;
  b.write('EFI PART', h, 'latin1');
  b.writeUInt32LE(0x00010000, h + 8);
  b.writeUInt32LE(92, h + 12);
  b.writeBigUInt64LE(1n, h + 24);
  b.writeBigUInt64LE(BigInt(lbas - 1), h + 32);
  b.writeBigUInt64LE(34n, h + 40);
  b.writeBigUInt64LE(BigInt(lbas - 34), h + 48);
  b.write('kilncorpusdiskid', h + 56, 'latin1');
  b.writeBigUInt64LE(2n, h + 72);
  b.writeUInt32LE(128, h + 80);
  b.writeUInt32LE(128, h + 84);
  const p = 1024;
  Buffer.from('0FC63DAF848347728E793D69D8477DE4', 'hex').copy(b, p); // Linux filesystem type
  b.write('kilncorpuspartid', p + 16, 'latin1');
  b.writeBigUInt64LE(2048n, p + 32);
  b.writeBigUInt64LE(BigInt(Math.max(2048, lbas - 34)), p + 40);
}

/** A minimal ISO 9660 image: empty system area, primary volume descriptor, terminator. */
function makeIso(sectors = 48): Buffer {
  const b = Buffer.alloc(sectors * 2048);
  const pvd = 16 * 2048;
  b[pvd] = 1;
  b.write('CD001', pvd + 1, 'latin1');
  b[pvd + 6] = 1;
  b.write('KILN'.padEnd(32), pvd + 8, 'latin1');
  b.write('KILN_CORPUS'.padEnd(32), pvd + 40, 'latin1');
  b.writeUInt32LE(sectors, pvd + 80);
  b.writeUInt32BE(sectors, pvd + 84);
  b.writeUInt16LE(1, pvd + 120);
  b.writeUInt16BE(1, pvd + 122);
  b.writeUInt16LE(1, pvd + 124);
  b.writeUInt16BE(1, pvd + 126);
  b.writeUInt16LE(2048, pvd + 128);
  b.writeUInt16BE(2048, pvd + 130);
  // root directory record: extent at sector 19, one sector long
  const root = pvd + 156;
  b[root] = 34;
  b.writeUInt32LE(19, root + 2);
  b.writeUInt32BE(19, root + 6);
  b.writeUInt32LE(2048, root + 10);
  b.writeUInt32BE(2048, root + 14);
  b[root + 25] = 2;
  b.writeUInt16LE(1, root + 28);
  b.writeUInt16BE(1, root + 30);
  b[root + 32] = 1;
  b[pvd + 881] = 1;
  const term = 17 * 2048;
  b[term] = 255;
  b.write('CD001', term + 1, 'latin1');
  b[term + 6] = 1;
  return b;
}

/** A LUKS1 header as cryptsetup/qemu write it (aes-xts-plain64, sha256), slot 0 active. */
function makeLuks1(payloadBytes: number): Buffer {
  const payloadSectors = 4040;
  const b = Buffer.alloc(payloadSectors * 512 + payloadBytes);
  Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]).copy(b, 0);
  b.writeUInt16BE(1, 6);
  b.write('aes', 8, 'latin1');
  b.write('xts-plain64', 40, 'latin1');
  b.write('sha256', 72, 'latin1');
  b.writeUInt32BE(payloadSectors, 104);
  b.writeUInt32BE(64, 108);
  for (let i = 0; i < 20; i++) b[112 + i] = (i * 37 + 11) & 0xff; // mk digest
  for (let i = 0; i < 32; i++) b[132 + i] = (i * 53 + 7) & 0xff; // mk digest salt
  b.writeUInt32BE(1000, 164);
  b.write('6b696c6e-636f-7270-7573-6c756b733031', 168, 'latin1');
  for (let s = 0; s < 8; s++) {
    const k = 208 + s * 48;
    b.writeUInt32BE(s === 0 ? 0x00ac71f3 : 0x0000dead, k);
    b.writeUInt32BE(s === 0 ? 1000 : 0, k + 4);
    if (s === 0) for (let i = 0; i < 32; i++) b[k + 8 + i] = (i * 17 + 3) & 0xff;
    b.writeUInt32BE(8 + s * 504, k + 40);
    b.writeUInt32BE(4000, k + 44);
  }
  return b;
}

// ---- qcow2 patching -----------------------------------------------------------------------

/** Puts a backing file name in the first cluster and points the header at it. */
function setQcow2Backing(b: Buffer, name: string): void {
  const at = 64 * KiB - 1024;
  const bytes = Buffer.from(name, 'latin1');
  bytes.copy(b, at);
  put64be(b, 8, at);
  put32be(b, 16, bytes.length);
}

/** A 100-byte qcow2 v2: a full 72-byte header declaring a backing file right after it. */
function shortQcow2WithBacking(): Buffer {
  const b = Buffer.alloc(100);
  Buffer.from([0x51, 0x46, 0x49, 0xfb]).copy(b, 0);
  put32be(b, 4, 2);
  const name = Buffer.from('/var/lib/kiln/secret.raw', 'latin1');
  put64be(b, 8, 72);
  put32be(b, 16, name.length);
  put32be(b, 20, 16);
  put64be(b, 24, 1 * MiB);
  name.copy(b, 72);
  return b;
}

// ---- vmdk patching ------------------------------------------------------------------------

async function patchVmdkDescriptor(path: string, edit: (text: string) => string): Promise<void> {
  await patch(path, (b) => {
    const off = Number(b.readBigUInt64LE(28)) * 512;
    const len = Number(b.readBigUInt64LE(36)) * 512;
    const area = b.subarray(off, off + len);
    const nul = area.indexOf(0);
    const text = edit(area.subarray(0, nul < 0 ? len : nul).toString('latin1'));
    const bytes = Buffer.from(text, 'latin1');
    if (bytes.length > len) throw new Error('patched descriptor does not fit');
    area.fill(0);
    bytes.copy(area);
  });
}

// ---- the corpus ---------------------------------------------------------------------------

interface Maker {
  c: CorpusCase;
  make(path: string): Promise<void>;
}

export async function buildCorpus(dir: string, qemuImg: QemuImg): Promise<CorpusCase[]> {
  await mkdir(dir, { recursive: true });
  const p = (name: string) => join(dir, name);
  const src = p('_source.raw');
  const srcMbr = p('_source-mbr.raw');
  await writeFile(src, rawData(4 * MiB));
  const withMbr = rawData(4 * MiB);
  writeMbr(withMbr, 0x83);
  await writeFile(srcMbr, withMbr);
  const ff = Buffer.alloc(1 * MiB, 0xff);
  await writeFile(p('_source-ff.raw'), ff);

  const convert = (to: Parameters<QemuImg['convert']>[0]['dstFormat'], opts: Partial<Parameters<QemuImg['convert']>[0]> = {}, from = src) =>
    (path: string) => qemuImg.convert({ src: from, srcFormat: 'raw', dst: path, dstFormat: to, ...opts });
  const qcow2v3 = convert('qcow2');
  const then = (first: (path: string) => Promise<void>, fn: (b: Buffer) => Buffer | void) => async (path: string) => {
    await first(path);
    await patch(path, fn);
  };

  const makers: Maker[] = [
    // -- benign: the formats kiln accepts by default, as qemu-img writes them
    { c: { name: 'raw.img', rule: 'declared-format', kind: 'benign', declaredFormat: 'raw', expect: { format: 'raw' } }, make: (x) => writeFile(x, rawData(4 * MiB)) },
    { c: { name: 'qcow2-v3.qcow2', rule: 'qcow2-version', kind: 'benign', declaredFormat: 'qcow2', expect: { format: 'qcow2' } }, make: qcow2v3 },
    { c: { name: 'qcow2-v2.qcow2', rule: 'qcow2-version', kind: 'benign', declaredFormat: 'qcow2', expect: { format: 'qcow2' } }, make: convert('qcow2', { targetOptions: { compat: '0.10' } }) },
    { c: { name: 'qcow2-compressed.qcow2', rule: 'qcow2-incompatible', kind: 'benign', expect: { format: 'qcow2' } }, make: convert('qcow2', { compress: true }) },
    { c: { name: 'qcow2-zstd.qcow2', rule: 'qcow2-incompatible', kind: 'benign', expect: { format: 'qcow2' } }, make: convert('qcow2', { compress: true, targetOptions: { compression_type: 'zstd' } }) },
    { c: { name: 'qcow2-cluster-2m.qcow2', rule: 'qcow2-range', kind: 'benign', expect: { format: 'qcow2' } }, make: (x) => qemuImg.create(x, { format: 'qcow2', size: 64 * MiB, clusterSize: 2 * MiB }) },
    { c: { name: 'qcow2-no-backing.qcow2', rule: 'qcow2-backing', kind: 'benign', declaredFormat: 'qcow2', expect: { format: 'qcow2' } }, make: (x) => qemuImg.create(x, { format: 'qcow2', size: 1024 * MiB }) },
    { c: { name: 'qcow2-no-data-file.qcow2', rule: 'qcow2-data-file', kind: 'benign', expect: { format: 'qcow2' } }, make: qcow2v3 },
    { c: { name: 'qcow2-clean-header.qcow2', rule: 'qcow2-encrypted', kind: 'benign', expect: { format: 'qcow2' } }, make: qcow2v3 },
    { c: { name: 'vmdk-monolithic-sparse.vmdk', rule: 'vmdk-subformat', kind: 'benign', declaredFormat: 'vmdk', expect: { format: 'vmdk' } }, make: convert('vmdk') },
    { c: { name: 'vmdk-stream-optimized.vmdk', rule: 'vmdk-subformat', kind: 'benign', declaredFormat: 'vmdk', expect: { format: 'vmdk' } }, make: convert('vmdk', { targetOptions: { subformat: 'streamOptimized' } }) },
    { c: { name: 'vmdk-descriptor-ok.vmdk', rule: 'vmdk-descriptor', kind: 'benign', expect: { format: 'vmdk' } }, make: convert('vmdk', { targetOptions: { adapter_type: 'lsilogic' } }) },
    { c: { name: 'vmdk-extent-self.vmdk', rule: 'vmdk-extent-path', kind: 'benign', expect: { format: 'vmdk' } }, make: convert('vmdk') },
    { c: { name: 'iso.iso', rule: 'multiple-formats', kind: 'benign', declaredFormat: 'iso', expect: { format: 'iso' } }, make: (x) => writeFile(x, makeIso()) },
    { c: { name: 'iso-hybrid-mbr.iso', rule: 'multiple-formats', kind: 'benign', expect: { format: 'iso' } }, make: (x) => { const b = makeIso(); writeMbr(b, 0x17, 0x80, 0, 48 * 4); return writeFile(x, b); } },
    { c: { name: 'iso-hybrid-gpt.iso', rule: 'multiple-formats', kind: 'benign', expect: { format: 'iso' } }, make: (x) => { const b = makeIso(64); writeGpt(b); return writeFile(x, b); } },
    { c: { name: 'gpt-disk.img', rule: 'declared-format', kind: 'benign', declaredFormat: 'raw', expect: { format: 'gpt' } }, make: (x) => { const b = rawData(4 * MiB); b.fill(0, 0, 64 * KiB); writeGpt(b); return writeFile(x, b); } },
    { c: { name: 'mbr-disk.img', rule: 'declared-format', kind: 'benign', declaredFormat: 'raw', expect: { format: 'mbr' } }, make: (x) => writeFile(x, withMbr) },
    { c: { name: 'raw-100-bytes.img', rule: 'short-file', kind: 'benign', declaredFormat: 'raw', expect: { format: 'raw' } }, make: (x) => writeFile(x, Buffer.from('#!/bin/sh\necho this is a 100 byte raw image, no magic at all, kiln must call it raw.....\n'.padEnd(100, '.'), 'latin1')) },
    { c: { name: 'raw-near-qed.img', rule: 'qed', kind: 'benign', expect: { format: 'raw' } }, make: (x) => { const b = rawData(1 * MiB); b.write('QEX\0', 0, 'latin1'); return writeFile(x, b); } },
    { c: { name: 'qcow2-1g-under-ceiling.qcow2', rule: 'virtual-size', kind: 'benign', maxVirtualSize: 2 * 1024 * MiB, expect: { format: 'qcow2' } }, make: (x) => qemuImg.create(x, { format: 'qcow2', size: 1024 * MiB }) },
    { c: { name: 'qcow2-cross-check-ok.qcow2', rule: 'qemu-img-cross-check', kind: 'benign', expect: { format: 'qcow2' } }, make: convert('qcow2', {}, p('_source-ff.raw')) },
    // -- benign: optional formats, enabled by configuration
    { c: { name: 'vhd-dynamic-allowed.vhd', rule: 'optional-formats', kind: 'benign', declaredFormat: 'vhd', allowedFormats: ALL_OPTIONAL, expect: { format: 'vhd' } }, make: convert('vpc') },
    { c: { name: 'vhd-fixed-allowed.vhd', rule: 'optional-formats', kind: 'benign', declaredFormat: 'vpc', allowedFormats: ALL_OPTIONAL, expect: { format: 'vhd' } }, make: convert('vpc', { targetOptions: { subformat: 'fixed' } }) },
    { c: { name: 'vhd-fixed-with-mbr.vhd', rule: 'multiple-formats', kind: 'benign', allowedFormats: ALL_OPTIONAL, expect: { format: 'vhd' } }, make: convert('vpc', { targetOptions: { subformat: 'fixed' } }, srcMbr) },
    { c: { name: 'vhdx-allowed.vhdx', rule: 'optional-formats', kind: 'benign', allowedFormats: ALL_OPTIONAL, expect: { format: 'vhdx' } }, make: convert('vhdx') },
    { c: { name: 'vdi-allowed.vdi', rule: 'optional-formats', kind: 'benign', allowedFormats: ALL_OPTIONAL, expect: { format: 'vdi' } }, make: convert('vdi') },
    { c: { name: 'luks-allowed.luks', rule: 'optional-formats', kind: 'benign', allowedFormats: ALL_OPTIONAL, expect: { format: 'luks' } }, make: (x) => writeFile(x, makeLuks1(4 * MiB)) },
    { c: { name: 'vhd-no-parent.vhd', rule: 'parents', kind: 'benign', allowedFormats: ALL_OPTIONAL, expect: { format: 'vhd' } }, make: convert('vpc') },

    // -- malicious: several formats at once
    { c: { name: 'iso-with-qcow2-system-area.iso', rule: 'multiple-formats', kind: 'malicious', declaredFormat: 'iso', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'multiple_formats' } },
      make: async (x) => {
        const iso = makeIso();
        const q = p('_sys.qcow2');
        await qemuImg.create(q, { format: 'qcow2', size: 1024 * MiB, backing: undefined });
        (await readFile(q)).subarray(0, 512).copy(iso, 0);
        setQcow2Backing(iso.subarray(0, 64 * KiB), '/etc/shadow');
        await writeFile(x, iso);
      } },
    { c: { name: 'qcow2-with-mbr.qcow2', rule: 'multiple-formats', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'multiple_formats' } }, make: then(qcow2v3, (b) => writeMbr(b, 0x83)) },
    { c: { name: 'vdi-signature-in-qcow2.qcow2', rule: 'multiple-formats', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'multiple_formats' } }, make: then(qcow2v3, (b) => { b.writeUInt32LE(0xbeda107f, 0x40); }) },
    // -- malicious: declared format differs
    { c: { name: 'qcow2-declared-raw.qcow2', rule: 'declared-format', kind: 'malicious', declaredFormat: 'raw', expect: { format: 'qcow2', code: 'KILN_FORMAT_MISMATCH' } }, make: qcow2v3 },
    { c: { name: 'raw-declared-qcow2.img', rule: 'declared-format', kind: 'malicious', declaredFormat: 'qcow2', expect: { format: 'raw', code: 'KILN_FORMAT_MISMATCH' } }, make: (x) => writeFile(x, rawData(1 * MiB)) },
    { c: { name: 'vmdk-declared-qcow2.vmdk', rule: 'declared-format', kind: 'malicious', declaredFormat: 'qcow2', expect: { format: 'vmdk', code: 'KILN_FORMAT_MISMATCH' } }, make: convert('vmdk') },
    { c: { name: 'iso-declared-raw.iso', rule: 'declared-format', kind: 'malicious', declaredFormat: 'raw', expect: { format: 'iso', code: 'KILN_FORMAT_MISMATCH' } }, make: (x) => writeFile(x, makeIso()) },
    // -- malicious: qcow2 backing files of every kind, data files, features, versions, ranges
    { c: { name: 'qcow2-backing-absolute.qcow2', rule: 'qcow2-backing', kind: 'malicious', declaredFormat: 'qcow2', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qcow2.backing_file' } },
      make: async (x) => { const base = p('_base.raw'); await writeFile(base, rawData(1 * MiB)); await qemuImg.create(x, { format: 'qcow2', backing: { path: base, format: 'raw' } }); } },
    { c: { name: 'qcow2-backing-relative.qcow2', rule: 'qcow2-backing', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qcow2.backing_file' } }, make: then(qcow2v3, (b) => setQcow2Backing(b, '../../../etc/passwd')) },
    { c: { name: 'qcow2-backing-json.qcow2', rule: 'qcow2-backing', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qcow2.backing_file' } },
      make: then(qcow2v3, (b) => setQcow2Backing(b, 'json:{"driver":"raw","file":{"driver":"file","filename":"/etc/shadow"}}')) },
    { c: { name: 'qcow2-backing-protocol.qcow2', rule: 'qcow2-backing', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qcow2.backing_file' } }, make: then(qcow2v3, (b) => setQcow2Backing(b, 'nbd:127.0.0.1:10809')) },
    { c: { name: 'qcow2-data-file.qcow2', rule: 'qcow2-data-file', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qcow2.data_file' } },
      make: (x) => qemuImg.convert({ src, srcFormat: 'raw', dst: x, dstFormat: 'qcow2', targetOptions: { data_file: p('_data-file.raw') } }) },
    { c: { name: 'qcow2-data-file-bit-only.qcow2', rule: 'qcow2-data-file', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qcow2.data_file' } }, make: then(qcow2v3, (b) => { b[79] = b[79]! | 0x04; }) },
    { c: { name: 'qcow2-unknown-incompatible.qcow2', rule: 'qcow2-incompatible', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qcow2.incompatible_features' } }, make: then(qcow2v3, (b) => { b[76] = 0x01; }) },
    { c: { name: 'qcow2-corrupt-bit.qcow2', rule: 'qcow2-incompatible', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qcow2.corrupt' } }, make: then(qcow2v3, (b) => { b[79] = b[79]! | 0x02; }) },
    { c: { name: 'qcow2-version-4.qcow2', rule: 'qcow2-version', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qcow2.version' } }, make: then(qcow2v3, (b) => put32be(b, 4, 4)) },
    { c: { name: 'qcow2-version-1.qcow2', rule: 'qcow2-version', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qcow2.version' } }, make: then(qcow2v3, (b) => put32be(b, 4, 1)) },
    { c: { name: 'qcow2-cluster-bits-30.qcow2', rule: 'qcow2-range', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qcow2.header_range' } }, make: then(qcow2v3, (b) => put32be(b, 20, 30)) },
    { c: { name: 'qcow2-l1-unaligned.qcow2', rule: 'qcow2-range', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qcow2.header_range' } }, make: then(qcow2v3, (b) => put64be(b, 40, 0x30000 + 8)) },
    { c: { name: 'qcow2-refcount-past-eof.qcow2', rule: 'qcow2-range', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qcow2.header_range' } }, make: then(qcow2v3, (b) => put64be(b, 48, 2 ** 40)) },
    { c: { name: 'qcow2-l1-too-small.qcow2', rule: 'qcow2-range', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qcow2.header_range' } }, make: then(qcow2v3, (b) => put64be(b, 24, 2 ** 45)) },
    { c: { name: 'qcow2-header-length-huge.qcow2', rule: 'qcow2-range', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qcow2.header_range' } }, make: then(qcow2v3, (b) => put32be(b, 100, 0x7ffffff8)) },
    { c: { name: 'qcow2-extension-overflow.qcow2', rule: 'qcow2-range', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qcow2.header_range' } },
      make: then(qcow2v3, (b) => { const hl = b.readUInt32BE(100); put32be(b, hl, 0x12345678); put32be(b, hl + 4, 0x00ffffff); }) },
    { c: { name: 'qcow2-encrypted-aes.qcow2', rule: 'qcow2-encrypted', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qcow2.encrypted' } }, make: then(qcow2v3, (b) => put32be(b, 32, 1)) },
    // -- malicious: vmdk subformats, descriptors, extents
    { c: { name: 'vmdk-monolithic-flat.vmdk', rule: 'vmdk-subformat', kind: 'malicious', expect: { format: 'vmdk', code: 'KILN_IMAGE_UNSAFE', reason: 'vmdk.create_type' } }, make: convert('vmdk', { targetOptions: { subformat: 'monolithicFlat' } }) },
    { c: { name: 'vmdk-two-gb-sparse.vmdk', rule: 'vmdk-subformat', kind: 'malicious', expect: { format: 'vmdk', code: 'KILN_IMAGE_UNSAFE', reason: 'vmdk.descriptor_file' } }, make: convert('vmdk', { targetOptions: { subformat: 'twoGbMaxExtentSparse' } }) },
    { c: { name: 'vmdk-embedded-create-type-flat.vmdk', rule: 'vmdk-subformat', kind: 'malicious', expect: { format: 'vmdk', code: 'KILN_IMAGE_UNSAFE', reason: 'vmdk.create_type' } },
      make: async (x) => { await convert('vmdk')(x); await patchVmdkDescriptor(x, (t) => t.replace(/createType="[^"]*"/, 'createType="vmfs"')); } },
    { c: { name: 'vmdk-cowd.vmdk', rule: 'vmdk-subformat', kind: 'malicious', expect: { format: 'vmdk', code: 'KILN_IMAGE_UNSAFE', reason: 'vmdk.create_type' } },
      make: (x) => { const b = Buffer.alloc(64 * KiB); b.write('COWD', 0, 'latin1'); b.writeUInt32LE(1, 4); b.writeUInt32LE(8192, 12); return writeFile(x, b); } },
    { c: { name: 'vmdk-extent-absolute-path.vmdk', rule: 'vmdk-extent-path', kind: 'malicious', expect: { format: 'vmdk', code: 'KILN_IMAGE_UNSAFE', reason: 'vmdk.extent_path' } },
      make: async (x) => { await convert('vmdk')(x); await patchVmdkDescriptor(x, (t) => t.replace(/SPARSE "[^"]*"/, 'SPARSE "/etc/shadow"')); } },
    { c: { name: 'vmdk-extent-relative-path.vmdk', rule: 'vmdk-extent-path', kind: 'malicious', expect: { format: 'vmdk', code: 'KILN_IMAGE_UNSAFE', reason: 'vmdk.extent_path' } },
      make: async (x) => { await convert('vmdk')(x); await patchVmdkDescriptor(x, (t) => t.replace(/SPARSE "[^"]*"/, 'SPARSE "../instances/victim/disk.qcow2"')); } },
    { c: { name: 'vmdk-second-extent.vmdk', rule: 'vmdk-extent-path', kind: 'malicious', expect: { format: 'vmdk', code: 'KILN_IMAGE_UNSAFE', reason: 'vmdk.extents' } },
      make: async (x) => { await convert('vmdk')(x); await patchVmdkDescriptor(x, (t) => t.replace(/(RW \d+ SPARSE "[^"]*")/, '$1\nRW 8192 FLAT "other.raw" 0')); } },
    { c: { name: 'vmdk-descriptor-bad-line.vmdk', rule: 'vmdk-descriptor', kind: 'malicious', expect: { format: 'vmdk', code: 'KILN_IMAGE_UNSAFE', reason: 'vmdk.descriptor_line' } },
      make: async (x) => { await convert('vmdk')(x); await patchVmdkDescriptor(x, (t) => t.replace('# The Disk Data Base', 'fileName="/etc/passwd"\n# The Disk Data Base')); } },
    { c: { name: 'vmdk-descriptor-unknown-ddb.vmdk', rule: 'vmdk-descriptor', kind: 'malicious', expect: { format: 'vmdk', code: 'KILN_IMAGE_UNSAFE', reason: 'vmdk.descriptor_line' } },
      make: async (x) => { await convert('vmdk')(x); await patchVmdkDescriptor(x, (t) => t + 'ddb.parentFileName = "/etc/passwd"\n'); } },
    { c: { name: 'vmdk-descriptor-huge.vmdk', rule: 'vmdk-descriptor', kind: 'malicious', expect: { format: 'vmdk', code: 'KILN_IMAGE_UNSAFE', reason: 'vmdk.descriptor_size' } },
      make: then(convert('vmdk'), (b) => { b.writeBigUInt64LE(100000n, 36); }) },
    { c: { name: 'vmdk-capacity-zero.vmdk', rule: 'vmdk-descriptor', kind: 'malicious', expect: { format: 'vmdk', code: 'KILN_IMAGE_UNSAFE', reason: 'vmdk.header_range' } },
      make: then(convert('vmdk'), (b) => { b.writeBigUInt64LE(0n, 12); }) },
    { c: { name: 'vmdk-parent.vmdk', rule: 'parents', kind: 'malicious', expect: { format: 'vmdk', code: 'KILN_IMAGE_UNSAFE', reason: 'vmdk.parent' } },
      make: async (x) => { await convert('vmdk')(x); await patchVmdkDescriptor(x, (t) => t.replace(/parentCID=\w+/, 'parentCID=1234abcd')); } },
    // -- malicious: qed, always
    { c: { name: 'qed.qed', rule: 'qed', kind: 'malicious', allowedFormats: ALL_OPTIONAL, expect: { format: 'qed', code: 'KILN_IMAGE_UNSAFE', reason: 'qed.format' } }, make: convert('qed') },
    // -- malicious by default: optional formats off
    { c: { name: 'vhd-default-policy.vhd', rule: 'optional-formats', kind: 'malicious', expect: { format: 'vhd', code: 'KILN_FORMAT_NOT_ALLOWED' } }, make: convert('vpc') },
    { c: { name: 'vhdx-default-policy.vhdx', rule: 'optional-formats', kind: 'malicious', expect: { format: 'vhdx', code: 'KILN_FORMAT_NOT_ALLOWED' } }, make: convert('vhdx') },
    { c: { name: 'vdi-default-policy.vdi', rule: 'optional-formats', kind: 'malicious', expect: { format: 'vdi', code: 'KILN_FORMAT_NOT_ALLOWED' } }, make: convert('vdi') },
    { c: { name: 'luks-default-policy.luks', rule: 'optional-formats', kind: 'malicious', expect: { format: 'luks', code: 'KILN_FORMAT_NOT_ALLOWED' } }, make: (x) => writeFile(x, makeLuks1(1 * MiB)) },
    { c: { name: 'luks2.luks', rule: 'optional-formats', kind: 'malicious', allowedFormats: ALL_OPTIONAL, expect: { format: 'luks', code: 'KILN_IMAGE_UNSAFE', reason: 'luks.version' } }, make: (x) => { const b = makeLuks1(1 * MiB); b.writeUInt16BE(2, 6); return writeFile(x, b); } },
    // -- malicious: parents in the optional formats
    { c: { name: 'vhd-differencing.vhd', rule: 'parents', kind: 'malicious', allowedFormats: ALL_OPTIONAL, expect: { format: 'vhd', code: 'KILN_IMAGE_UNSAFE', reason: 'vhd.differencing' } },
      make: then(convert('vpc'), (b) => { put32be(b, 60, 4); put32be(b, b.length - 512 + 60, 4); }) },
    { c: { name: 'vdi-differencing.vdi', rule: 'parents', kind: 'malicious', allowedFormats: ALL_OPTIONAL, expect: { format: 'vdi', code: 'KILN_IMAGE_UNSAFE', reason: 'vdi.parent' } }, make: then(convert('vdi'), (b) => { b.writeUInt32LE(4, 0x4c); b.fill(0x11, 0x1b8, 0x1c8); }) },
    { c: { name: 'vhdx-has-parent.vhdx', rule: 'parents', kind: 'malicious', allowedFormats: ALL_OPTIONAL, expect: { format: 'vhdx', code: 'KILN_IMAGE_UNSAFE', reason: 'vhdx.parent' } }, make: then(convert('vhdx'), setVhdxHasParent) },
    // -- short files: recognised by magic, judged on what is there
    { c: { name: 'qcow2-100-bytes-backing.img', rule: 'short-file', kind: 'malicious', declaredFormat: 'raw', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qcow2.backing_file' } }, make: (x) => writeFile(x, shortQcow2WithBacking()) },
    { c: { name: 'vmdk-100-bytes.img', rule: 'short-file', kind: 'malicious', declaredFormat: 'raw', expect: { format: 'vmdk', code: 'KILN_IMAGE_UNSAFE', reason: 'vmdk.truncated' } }, make: (x) => { const b = Buffer.alloc(100); b.write('KDMV', 0, 'latin1'); b.writeUInt32LE(1, 4); return writeFile(x, b); } },
    // -- virtual size ceiling
    { c: { name: 'qcow2-3t-over-ceiling.qcow2', rule: 'virtual-size', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'virtual_size' } }, make: (x) => qemuImg.create(x, { format: 'qcow2', size: 3 * 1024 * 1024 * MiB }) },
    { c: { name: 'qcow2-2g-over-small-ceiling.qcow2', rule: 'virtual-size', kind: 'malicious', maxVirtualSize: 1024 * MiB, expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'virtual_size' } }, make: (x) => qemuImg.create(x, { format: 'qcow2', size: 2048 * MiB }) },
    // -- qemu-img disagrees with (or chokes on) what the header parser accepted
    { c: { name: 'qcow2-garbage-snapshot-table.qcow2', rule: 'qemu-img-cross-check', kind: 'malicious', expect: { format: 'qcow2', code: 'KILN_IMAGE_UNSAFE', reason: 'qemu_img.refused' } },
      make: then(convert('qcow2', {}, p('_source-ff.raw')), (b) => {
        const cluster = 64 * KiB;
        let at = 0;
        for (let off = cluster; off + cluster <= b.length; off += cluster) if (b[off] === 0xff && b[off + cluster - 1] === 0xff) { at = off; break; }
        if (!at) throw new Error('no data cluster of 0xff found');
        put32be(b, 60, 1);
        put64be(b, 64, at);
      }) },
  ];

  for (const m of makers) await m.make(p(m.c.name));
  return makers.map((m) => m.c);
}

/** Sets HasParent in the VHDX file parameters (metadata items carry no checksum). */
function setVhdxHasParent(b: Buffer): void {
  const guidBytes = Buffer.from('3767A1CA36FA434DB3B633F0AA44E76B', 'hex'); // CAA16737-FA36-4D43-B3B6-33F0AA44E76B, mixed-endian
  for (let region = MiB; region + 64 * KiB <= b.length; region += MiB) {
    if (b.subarray(region, region + 8).toString('latin1') !== 'metadata') continue;
    const count = b.readUInt16LE(region + 10);
    for (let i = 0; i < count; i++) {
      const e = region + 32 + i * 32;
      if (b.subarray(e, e + 16).equals(guidBytes)) {
        const item = region + b.readUInt32LE(e + 16);
        b.writeUInt32LE(b.readUInt32LE(item + 4) | 2, item + 4);
        return;
      }
    }
  }
  throw new Error('no VHDX file parameters found');
}
