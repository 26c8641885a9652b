// formats/inspect.ts and the per-format parsers on hand-crafted headers: detection, the
// multiple-format rule and its harmless hybrids, every qcow2/vmdk/vhd/vhdx/vdi/qed/luks rule,
// short files, the size ceiling and the read budget.
import t from 'tap';
import { detect, inspectBuffer, inspectSource, DEFAULT_MAX_READ_BYTES } from '../../../agent/formats/inspect.js';
import { bufferSource, type ByteSource } from '../../../agent/formats/source.js';
import { backingKind } from '../../../agent/formats/backing.js';
import type { InspectResult } from '../../../agent/formats/types.js';
import * as h from './headers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const codes = (r: InspectResult) => r.reasons.map((x) => x.code);

t.test('benign headers of every format are recognised and accepted', async (t) => {
  const cases: Array<[string, Buffer, string, number]> = [
    ['raw', Buffer.alloc(3 * MiB, 7), 'raw', 3 * MiB],
    ['qcow2 v3', h.qcow2(), 'qcow2', 64 * MiB],
    ['qcow2 v2', h.qcow2({ version: 2 }), 'qcow2', 64 * MiB],
    ['qcow2 zstd', h.qcow2({ incompatible: 8n, compressionType: 1 }), 'qcow2', 64 * MiB],
    ['qcow2 512-byte clusters', h.qcow2({ clusterBits: 9, size: MiB }), 'qcow2', MiB],
    ['vmdk monolithicSparse', h.vmdk(), 'vmdk', 131072 * 512],
    ['vmdk streamOptimized', h.vmdk(h.VMDK_DESCRIPTOR.replace('monolithicSparse', 'streamOptimized')), 'vmdk', 131072 * 512],
    ['vhd dynamic', h.vhdDynamic(), 'vhd', 8 * MiB],
    ['vhd fixed', h.vhdFixed(Buffer.alloc(MiB)), 'vhd', MiB],
    ['vhdx', h.vhdx(), 'vhdx', 64 * MiB],
    ['vdi', h.vdi(), 'vdi', 8 * MiB],
    ['luks1', h.luks(), 'luks', MiB],
    ['iso', h.iso(), 'iso', 40 * 2048],
    ['gpt', h.gpt(Buffer.alloc(MiB)), 'gpt', MiB],
    ['mbr', h.mbr(Buffer.alloc(MiB)), 'mbr', MiB],
  ];
  for (const [name, buf, format, size] of cases) {
    const r = await inspectBuffer(buf);
    t.equal(r.format, format, `${name}: format`);
    t.equal(r.virtualSize, size, `${name}: virtual size`);
    t.same(r.reasons, [], `${name}: no reasons`);
    t.equal(r.safe, true, `${name}: safe`);
  }
});

t.test('vhd virtual size follows qemu: CHS geometry for Virtual PC, current_size for others', async (t) => {
  const chs = 1024 * 16 * 63 * 512;
  const vpc = h.vhdFixed(Buffer.alloc(chs));
  vpc.write('vpc ', vpc.length - 512 + 28, 'latin1');
  vpc.writeBigUInt64BE(BigInt(chs + 12345 * 512), vpc.length - 512 + 48);
  t.equal((await inspectBuffer(vpc)).virtualSize, chs);
  const win = h.vhdFixed(Buffer.alloc(MiB));
  win.write('win ', win.length - 512 + 28, 'latin1');
  t.equal((await inspectBuffer(win)).virtualSize, MiB);
});

t.test('multiple formats: unsafe, except iso+mbr, iso+gpt, gpt+protective mbr, fixed vhd holding a disk', async (t) => {
  const isoQcow2 = h.iso();
  h.qcow2().subarray(0, 512).copy(isoQcow2, 0);
  let r = await inspectBuffer(isoQcow2);
  t.same(r.matches, ['qcow2', 'iso']);
  t.ok(codes(r).includes('multiple_formats'), 'iso whose system area holds a qcow2 header');
  t.equal(r.safe, false);

  const qcowVdi = h.qcow2();
  qcowVdi.writeUInt32LE(0xbeda107f, 0x40);
  r = await inspectBuffer(qcowVdi);
  t.ok(codes(r).includes('multiple_formats'), 'qcow2 with a vdi signature');

  const qcowMbr = h.mbr(h.qcow2());
  r = await inspectBuffer(qcowMbr);
  t.ok(codes(r).includes('multiple_formats'), 'qcow2 with a partition table');

  const vmdkVhd = Buffer.concat([h.vmdk(), h.vhdFooter({ type: 2, size: 64 * KiB })]);
  r = await inspectBuffer(vmdkVhd);
  t.ok(codes(r).includes('multiple_formats'), 'vmdk with a vhd footer at the end');

  for (const [name, buf] of [['iso+mbr', h.mbr(h.iso())], ['iso+gpt', h.gpt(h.iso())], ['gpt', h.gpt(Buffer.alloc(MiB))], ['vhd fixed + mbr', h.vhdFixed(h.mbr(Buffer.alloc(MiB)))]] as const) {
    r = await inspectBuffer(buf);
    t.same(r.reasons, [], `${name} is harmless`);
  }
  t.equal((await inspectBuffer(h.mbr(h.iso()))).format, 'iso');
  t.equal((await inspectBuffer(h.gpt(h.iso()))).format, 'iso');
  t.equal((await inspectBuffer(h.vhdFixed(h.mbr(Buffer.alloc(MiB))))).format, 'vhd');
  t.same(detect(h.gpt(Buffer.alloc(8 * KiB)), undefined).matches, ['gpt', 'mbr'], 'protective MBR matches too, and is folded into gpt');
});

t.test('qcow2: backing files of every kind are unsafe', async (t) => {
  for (const [name, kind] of [['/etc/passwd', 'absolute'], ['../base.qcow2', 'relative'], ['json:{"file":{"filename":"/etc/shadow"}}', 'json'], ['nbd:127.0.0.1:10809', 'protocol'], ['http://evil/x', 'protocol']] as const) {
    const r = await inspectBuffer(h.qcow2({ backing: name }));
    t.ok(codes(r).includes('qcow2.backing_file'), `${name}`);
    t.equal(r.backing?.name, name);
    t.equal(r.backing?.kind, kind);
  }
  t.equal(backingKind('a/b:c'), 'relative', 'a colon after a slash is a path');
  const v2 = await inspectBuffer(h.qcow2({ version: 2, backing: 'base' }));
  t.ok(codes(v2).includes('qcow2.backing_file'), 'v2 too');
  // a backing offset with size 0, or a name outside the first cluster: still a backing file
  const weird = h.qcow2();
  weird.writeBigUInt64BE(70000n, 8);
  t.ok(codes(await inspectBuffer(weird)).includes('qcow2.backing_file'));
  const outside = h.qcow2();
  outside.writeBigUInt64BE(65530n, 8);
  outside.writeUInt32BE(100, 16);
  const o = await inspectBuffer(outside);
  t.ok(codes(o).includes('qcow2.backing_file') && codes(o).includes('qcow2.header_range'), 'name past the first cluster');
});

t.test('qcow2: external data file (bit or extension), features, versions, encryption', async (t) => {
  let r = await inspectBuffer(h.qcow2({ dataFile: '/dev/sda', incompatible: 4n }));
  t.ok(codes(r).includes('qcow2.data_file'));
  t.equal(r.dataFile, '/dev/sda');
  r = await inspectBuffer(h.qcow2({ dataFile: 'data.raw' }));
  t.ok(codes(r).includes('qcow2.data_file'), 'extension without the bit');
  r = await inspectBuffer(h.qcow2({ incompatible: 4n }));
  t.ok(codes(r).includes('qcow2.data_file'), 'bit without the extension');
  r = await inspectBuffer(h.qcow2({ incompatible: 1n << 40n }));
  t.ok(codes(r).includes('qcow2.incompatible_features'));
  t.match(r.reasons.find((x) => x.code === 'qcow2.incompatible_features')?.message, /0x10000000000/);
  r = await inspectBuffer(h.qcow2({ incompatible: 1n }));
  t.same(r.reasons, [], 'dirty bit is known and harmless');
  r = await inspectBuffer(h.qcow2({ incompatible: 2n }));
  t.ok(codes(r).includes('qcow2.corrupt'));
  r = await inspectBuffer(h.qcow2({ incompatible: 8n, compressionType: 7 }));
  t.ok(codes(r).includes('qcow2.compression_type'));
  for (const v of [0, 1, 4, 0xffffffff]) t.ok(codes(await inspectBuffer(h.qcow2({ version: v }))).includes('qcow2.version'), `version ${v}`);
  t.ok(codes(await inspectBuffer(h.qcow2({ cryptMethod: 1 }))).includes('qcow2.encrypted'));
  t.ok(codes(await inspectBuffer(h.qcow2({ cryptMethod: 2 }))).includes('qcow2.encrypted'));
});

t.test('qcow2: header fields and offsets out of range', async (t) => {
  const mutate = async (fn: (b: Buffer) => void) => {
    const b = h.qcow2();
    fn(b);
    return codes(await inspectBuffer(b));
  };
  t.ok((await mutate((b) => b.writeUInt32BE(8, 20))).includes('qcow2.header_range'), 'cluster_bits 8');
  t.ok((await mutate((b) => b.writeUInt32BE(22, 20))).includes('qcow2.header_range'), 'cluster_bits 22');
  t.ok((await mutate((b) => b.writeBigUInt64BE(3n * 65536n + 8n, 40))).includes('qcow2.header_range'), 'L1 unaligned');
  t.ok((await mutate((b) => b.writeBigUInt64BE(1n << 40n, 40))).includes('qcow2.header_range'), 'L1 past EOF');
  t.ok((await mutate((b) => b.writeUInt32BE(0x800000, 36))).includes('qcow2.header_range'), 'L1 too large');
  t.ok((await mutate((b) => b.writeUInt32BE(0, 36))).includes('qcow2.header_range'), 'L1 too small');
  t.ok((await mutate((b) => b.writeBigUInt64BE(0n, 48))).includes('qcow2.header_range'), 'refcount table at 0');
  t.ok((await mutate((b) => b.writeUInt32BE(1000, 56))).includes('qcow2.header_range'), 'refcount table too large');
  t.ok((await mutate((b) => b.writeUInt32BE(70000, 60))).includes('qcow2.header_range'), 'too many snapshots');
  t.ok((await mutate((b) => { b.writeUInt32BE(1, 60); b.writeBigUInt64BE(12345n, 64); })).includes('qcow2.header_range'), 'snapshot table unaligned');
  t.ok((await mutate((b) => b.writeUInt32BE(100, 100))).includes('qcow2.header_range'), 'header_length < 104');
  t.ok((await mutate((b) => b.writeUInt32BE(1 << 20, 100))).includes('qcow2.header_range'), 'header_length > cluster');
  t.ok((await mutate((b) => b.writeUInt32BE(9, 96))).includes('qcow2.header_range'), 'refcount_order 9');
  t.ok((await mutate((b) => b.writeBigUInt64BE(1n << 60n, 24))).includes('qcow2.header_range'), 'size beyond 2^53');
  t.ok((await mutate((b) => { b.writeUInt32BE(0xabcdef01, 104); b.writeUInt32BE(0x10000000, 108); })).includes('qcow2.header_range'), 'extension longer than the cluster');
  const many = h.qcow2();
  for (let i = 0; i < 300; i++) { many.writeUInt32BE(0x1000 + i, 104 + i * 8); many.writeUInt32BE(0, 108 + i * 8); }
  t.ok(codes(await inspectBuffer(many)).includes('qcow2.header_range'), 'more than 256 extensions');
});

t.test('short files are recognised by their magic and judged on what is there', async (t) => {
  const full = h.qcow2({ version: 2, backing: '/var/lib/kiln/secret.raw' });
  const short = full.subarray(0, 100);
  const r = await inspectBuffer(short);
  t.equal(r.format, 'qcow2', 'a 100-byte qcow2 is a qcow2');
  t.ok(codes(r).includes('qcow2.backing_file'));
  // The name starts at byte 80 and the file ends at 100: what is there is reported.
  t.equal(r.backing?.name, '/var/lib/kiln/secret.raw'.slice(0, 20));
  t.equal(r.safe, false);
  for (const n of [4, 8, 20, 50, 71, 103]) {
    const x = await inspectBuffer(h.qcow2().subarray(0, n));
    t.equal(x.format, 'qcow2', `${n} bytes`);
    t.equal(x.safe, false, `${n} bytes: unsafe`);
    t.ok(codes(x).includes('qcow2.truncated'), `${n} bytes: truncated`);
  }
  for (const [name, buf, code] of [['vmdk', h.vmdk().subarray(0, 100), 'vmdk.truncated'], ['vdi', h.vdi().subarray(0, 200), 'vdi.truncated'], ['luks', h.luks().subarray(0, 300), 'luks.truncated']] as const) {
    const x = await inspectBuffer(buf);
    t.equal(x.format, name);
    t.ok(codes(x).includes(code), code);
  }
  const tiny = await inspectBuffer(Buffer.from('hello'));
  t.equal(tiny.format, 'raw');
  t.equal(tiny.virtualSize, 5);
  t.equal(tiny.safe, true);
  t.equal((await inspectBuffer(Buffer.alloc(0))).format, 'raw', 'empty file is raw');
});

t.test('vmdk: subformats, descriptor whitelist and size cap, extents, parents', async (t) => {
  const D = h.VMDK_DESCRIPTOR;
  const check = async (desc: string, code: string, msg: string) => t.ok(codes(await inspectBuffer(h.vmdk(desc))).includes(code), msg);
  await check(D.replace('monolithicSparse', 'monolithicFlat'), 'vmdk.create_type', 'monolithicFlat');
  await check(D.replace('monolithicSparse', 'twoGbMaxExtentSparse'), 'vmdk.create_type', 'twoGbMaxExtentSparse');
  await check(D.replace('createType="monolithicSparse"\n', ''), 'vmdk.create_type', 'no createType');
  await check(D.replace('"disk.vmdk"', '"/etc/shadow"'), 'vmdk.extent_path', 'absolute extent');
  await check(D.replace('"disk.vmdk"', '"../../x.qcow2"'), 'vmdk.extent_path', 'relative path extent');
  await check(D.replace('"disk.vmdk"', '"json:{}"'), 'vmdk.extent_path', 'json: extent');
  await check(D.replace('SPARSE', 'FLAT'), 'vmdk.extents', 'FLAT extent');
  await check(D.replace('RW 131072 SPARSE "disk.vmdk"', 'RW 131072 SPARSE "disk.vmdk"\nRW 1 SPARSE "disk2.vmdk"'), 'vmdk.extents', 'two extents');
  await check(D + 'fileName="/etc/passwd"\n', 'vmdk.descriptor_line', 'unknown line');
  await check(D + 'ddb.parentFileName = "x"\n', 'vmdk.descriptor_line', 'unknown ddb key');
  await check(D.replace('CID=12345678', 'CID=12345678; rm -rf /'), 'vmdk.descriptor_line', 'garbage after a value');
  await check(D.replace('parentCID=ffffffff', 'parentCID=deadbeef'), 'vmdk.parent', 'parentCID');
  await check(D + 'parentFileNameHint="base.vmdk"\n', 'vmdk.parent', 'parentFileNameHint');
  t.same((await inspectBuffer(h.vmdk(D.replace(/\n/g, '\r\n')))).reasons, [], 'CRLF descriptors are fine');
  const many = await inspectBuffer(h.vmdk(D + Array.from({ length: 40 }, (_, i) => `junk${i}=1`).join('\n')));
  t.ok(many.reasons.filter((x) => x.code === 'vmdk.descriptor_line').length <= 6, 'line reasons are capped');
  t.ok(codes(await inspectBuffer(h.vmdk(D, { descSectors: 1000 }))).includes('vmdk.descriptor_size'), 'descriptor size capped');
  t.ok(codes(await inspectBuffer(h.vmdk(D, { descSectors: 0 }))).includes('vmdk.no_descriptor'));
  t.ok(codes(await inspectBuffer(h.vmdk(D, { capacity: 0 }))).includes('vmdk.header_range'), 'capacity 0');
  t.ok(codes(await inspectBuffer(h.vmdk(D, { fileBytes: 2048 }))).includes('vmdk.header_range'), 'descriptor past EOF');
  const desc = await inspectBuffer(Buffer.from(D, 'latin1'));
  t.equal(desc.format, 'vmdk', 'a descriptor-only file is a vmdk');
  t.ok(codes(desc).includes('vmdk.descriptor_file'));
  const bigDesc = await inspectBuffer(Buffer.concat([Buffer.from(D, 'latin1'), Buffer.alloc(100 * KiB, 0x23)]));
  t.ok(codes(bigDesc).includes('vmdk.descriptor_size'), 'descriptor file over the cap');
  const cowd = Buffer.alloc(4096);
  cowd.write('COWD', 0, 'latin1');
  t.ok(codes(await inspectBuffer(cowd)).includes('vmdk.create_type'), 'COWD');
});

t.test('vhd, vhdx, vdi, qed, luks rules', async (t) => {
  t.ok(codes(await inspectBuffer(h.vhdDynamic({ type: 4 }))).includes('vhd.differencing'));
  t.ok(codes(await inspectBuffer(h.vhdDynamic({ type: 9 }))).includes('vhd.header_range'));
  const noDyn = h.vhdDynamic();
  noDyn.fill(0, 512, 520);
  t.ok(codes(await inspectBuffer(noDyn)).includes('vhd.header_range'), 'missing cxsparse');
  const forgedFixed = Buffer.concat([h.vhdFooter({ type: 2, size: MiB }), Buffer.alloc(MiB)]);
  t.ok(codes(await inspectBuffer(forgedFixed)).includes('vhd.header_range'), 'fixed footer only at the start');
  t.ok(codes(await inspectBuffer(h.vhdx({ hasParent: true }))).includes('vhdx.parent'));
  t.ok(codes(await inspectBuffer(h.vhdx({ logGuid: true }))).includes('vhdx.log'));
  t.ok(codes(await inspectBuffer(h.vhdx({ unknownRequired: true }))).includes('vhdx.region'));
  const badCrc = h.vhdx();
  badCrc[64 * KiB + 100] ^= 1;
  badCrc[128 * KiB + 100] ^= 1;
  t.ok(codes(await inspectBuffer(badCrc)).includes('vhdx.header'), 'both headers fail CRC');
  const oneBad = h.vhdx();
  oneBad[128 * KiB + 100] ^= 1;
  t.same((await inspectBuffer(oneBad)).reasons, [], 'one valid header suffices');
  t.ok(codes(await inspectBuffer(h.vdi({ type: 4 }))).includes('vdi.parent'));
  t.ok(codes(await inspectBuffer(h.vdi({ parent: true }))).includes('vdi.parent'));
  const vdiBig = h.vdi();
  vdiBig.writeBigUInt64LE(1n << 40n, 0x170);
  t.ok(codes(await inspectBuffer(vdiBig)).includes('vdi.header_range'), 'disk larger than its block map');
  const q = await inspectBuffer(h.qed());
  t.same(codes(q), ['qed.format'], 'qed is always unsafe');
  t.equal(q.virtualSize, 1024 * MiB);
  t.ok(codes(await inspectBuffer(h.qed({ backing: '/etc/passwd' }))).includes('qed.backing_file'));
  t.ok(codes(await inspectBuffer(h.luks({ version: 2 }))).includes('luks.version'));
  t.ok(codes(await inspectBuffer(h.luks({ payloadSectors: 1 }))).includes('luks.header_range'));
});

t.test('the virtual size ceiling', async (t) => {
  const r = await inspectBuffer(h.qcow2({ size: 3 * 1024 ** 4 }), { maxVirtualSize: 2 * 1024 ** 4 });
  t.ok(codes(r).includes('virtual_size'));
  t.same((await inspectBuffer(h.qcow2({ size: 1024 ** 4 }), { maxVirtualSize: 2 * 1024 ** 4 })).reasons, []);
  t.ok(codes(await inspectBuffer(Buffer.alloc(4096), { maxVirtualSize: 1000 })).includes('virtual_size'), 'raw files too');
});

t.test('reads are bounded: a huge sparse source is inspected with a few KiB', async (t) => {
  const head = h.qcow2();
  let bytes = 0;
  let calls = 0;
  const huge: ByteSource = {
    size: 2 ** 50,
    async read(offset, length) {
      calls++;
      bytes += length;
      const out = Buffer.alloc(length);
      if (offset < head.length) head.copy(out, 0, offset, Math.min(head.length, offset + length));
      return out;
    },
  };
  const r = await inspectSource(huge);
  t.equal(r.format, 'qcow2');
  t.ok(bytes <= 128 * KiB, `${bytes} bytes read in ${calls} calls`);
  t.equal(r.bytesRead, bytes);
  const budget = await inspectSource(bufferSource(h.vhdx()), { maxReadBytes: 100 * KiB });
  t.ok(codes(budget).includes('inspect.read_budget'), 'an inspection needing more than the budget is unsafe');
  t.ok(budget.bytesRead <= 100 * KiB);
  t.ok(DEFAULT_MAX_READ_BYTES <= 16 * MiB);
});
