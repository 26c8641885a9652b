import t from 'tap';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { writeIso9660, type IsoFileInput } from '../../../agent/seed/iso9660/writer.js';
import { comparePrimary, primaryNames, splitIsoPath } from '../../../agent/seed/iso9660/names.js';
import { both16, both32, recordDate, volumeDate } from '../../../agent/seed/iso9660/encode.js';
import { expectBad } from './helpers.js';
import { readIso } from './iso-reader.js';

const WHEN = new Date('2026-03-04T05:06:07.890Z');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');


t.test('encodings: both-endian numbers and dates', async (t) => {
  t.same([...both32(0x01020304)], [4, 3, 2, 1, 1, 2, 3, 4]);
  t.same([...both16(0x0102)], [2, 1, 1, 2]);
  t.same([...recordDate(WHEN)], [126, 3, 4, 5, 6, 7, 0]);
  t.equal(volumeDate(WHEN).subarray(0, 16).toString('latin1'), '2026030405060789');
  t.equal(volumeDate(WHEN)[16], 0);
  t.equal(volumeDate(null).subarray(0, 16).toString('latin1'), '0000000000000000');
});

t.test('descriptors, label, sizes and both hierarchies', async (t) => {
  const files: IsoFileInput[] = [
    { path: 'user-data', data: Buffer.from('#cloud-config\n') },
    { path: 'meta-data', data: Buffer.from('instance-id: i-1\n') },
    { path: 'openstack/latest/meta_data.json', data: Buffer.from('{"uuid":"x"}') },
    { path: 'run.sh', data: Buffer.from('#!/bin/sh\n'), mode: 0o755 },
  ];
  const iso = writeIso9660({ volumeLabel: 'cidata', files, timestamp: WHEN });
  t.equal(iso.length % 2048, 0);
  const read = readIso(iso);
  t.equal(read.label, 'cidata');
  t.equal(read.jolietLabel, 'cidata');
  t.equal(read.volumeSectors * 2048, iso.length, 'volume space size matches the image');
  for (const f of files) {
    t.same(read.rock.get(f.path)?.data, f.data, `rock ${f.path}`);
    t.same(read.joliet.get(f.path)?.data, f.data, `joliet ${f.path}`);
  }
  t.equal(read.rock.get('run.sh')?.mode, 0o100755);
  t.equal(read.rock.get('user-data')?.mode, 0o100444, 'files default to read-only');
  t.equal(read.rockDirs.get('openstack/latest'), 0o40555);
  t.equal(read.rock.get('user-data')?.isoName, 'USER_DAT.;1', 'level-1 primary name');
  // Path table sizes are the same in the L and M copies, and the root is record 1.
  const pvd = iso.subarray(16 * 2048);
  const ptSize = pvd.readUInt32LE(132);
  const lLoc = pvd.readUInt32LE(140);
  const mLoc = pvd.readUInt32BE(148);
  t.equal(iso[lLoc * 2048], 1, 'root path record id length 1');
  t.equal(iso.readUInt16LE(lLoc * 2048 + 6), 1, 'root parent is itself');
  t.equal(iso.readUInt16BE(mLoc * 2048 + 6), 1);
  t.ok(ptSize >= 10 + 3 * 10, 'path table holds four folders');
});

t.test('deterministic: same inputs give the same bytes, whatever the input order', async (t) => {
  const files: IsoFileInput[] = [
    { path: 'b', data: Buffer.from('2') },
    { path: 'a/c', data: Buffer.from('3') },
    { path: 'a/b', data: Buffer.from('1') },
  ];
  const one = writeIso9660({ volumeLabel: 'cidata', files, timestamp: WHEN });
  const two = writeIso9660({ volumeLabel: 'cidata', files: [...files].reverse(), timestamp: new Date(WHEN.getTime()) });
  t.equal(sha(one), sha(two));
  const later = writeIso9660({ volumeLabel: 'cidata', files, timestamp: new Date(WHEN.getTime() + 1000) });
  t.not(sha(one), sha(later), 'the timestamp is part of the image');
});

t.test('names: level-1 mangling is unique and ordered per ECMA-119 9.3', async (t) => {
  const names = primaryNames([
    { name: 'user-data', dir: false },
    { name: 'user-data2', dir: false },
    { name: 'user_data', dir: false },
    { name: 'openstack', dir: true },
    { name: '.hidden', dir: false },
    { name: 'archive.tar.gz', dir: false },
  ]);
  t.same(names, ['USER_DAT.;1', 'USER_D~1.;1', 'USER_D~2.;1', 'OPENSTAC', '_HIDDEN.;1', 'ARCHIVE_.GZ;1']);
  t.ok(comparePrimary('A.B;1', 'A.B0;1') < 0, 'extension compared padded with spaces');
  t.ok(comparePrimary('AB.;1', 'A.Z;1') > 0, 'name before extension');
  t.same(splitIsoPath('openstack/latest/meta_data.json'), ['openstack', 'latest', 'meta_data.json']);
});

t.test('names ISO9660/Joliet cannot hold are refused with the reason', async (t) => {
  const one = (path: string) => () => writeIso9660({ volumeLabel: 'cidata', timestamp: WHEN, files: [{ path, data: Buffer.from('x') }] });
  expectBad(t, one('x'.repeat(65)), /longer than 64/, 'long name');
  expectBad(t, one('a:b'), /Joliet forbids/, 'colon');
  expectBad(t, one('a;1'), /Joliet forbids/, 'semicolon');
  expectBad(t, one('a\\b'), /Joliet forbids/, 'backslash');
  expectBad(t, one('tab\tname'), /control character/, 'control');
  expectBad(t, one('emoji-\u{1F600}'), /Basic Multilingual Plane/, 'astral');
  expectBad(t, one('/abs'), /relative/, 'absolute');
  expectBad(t, one('a//b'), /empty/, 'empty component');
  expectBad(t, one('a/../b'), /not a file name/, 'dot-dot');
  expectBad(t, one('1/2/3/4/5/6/7/8/9'), /deeper than 8/, 'too deep');
  expectBad(t, one(Array.from({ length: 5 }, () => 'x'.repeat(60)).join('/')), /longer than 240/, 'long path');
  expectBad(t, one(''), /empty/, 'empty path');
  t.doesNotThrow(one('1/2/3/4/5/6/7/8'), 'eight levels are fine');
  t.doesNotThrow(one('x'.repeat(64)), '64 characters are fine');
});

t.test('structural refusals: duplicates, file/folder clashes, cap, label, timestamp, mode', async (t) => {
  const base = { volumeLabel: 'cidata', timestamp: WHEN };
  expectBad(t, () => writeIso9660({ ...base, files: [{ path: 'a', data: Buffer.from('1') }, { path: 'a', data: Buffer.from('2') }] }), /twice/, 'duplicate');
  expectBad(t, () => writeIso9660({ ...base, files: [{ path: 'a', data: Buffer.from('1') }, { path: 'a/b', data: Buffer.from('2') }] }), /is a file/, 'file then folder');
  expectBad(t, () => writeIso9660({ ...base, files: [{ path: 'a/b', data: Buffer.from('2') }, { path: 'a', data: Buffer.from('1') }] }), /twice, or is also a folder/, 'folder then file');
  expectBad(t, () => writeIso9660({ ...base, maxFileBytes: 10, files: [{ path: 'a', data: Buffer.alloc(11) }] }), /over the cap of 10/, 'cap');
  t.doesNotThrow(() => writeIso9660({ ...base, maxFileBytes: 10, files: [{ path: 'a', data: Buffer.alloc(10) }] }), 'exactly the cap');
  expectBad(t, () => writeIso9660({ ...base, volumeLabel: 'x'.repeat(33), files: [] }), /invalid volume label/, 'label');
  expectBad(t, () => writeIso9660({ ...base, volumeLabel: 'ci/data', files: [] }), /invalid volume label/, 'label chars');
  expectBad(t, () => writeIso9660({ ...base, timestamp: new Date('nope'), files: [] }), /not a valid date/, 'date');
  expectBad(t, () => writeIso9660({ ...base, timestamp: new Date('1969-12-31T00:00:00Z'), files: [] }), /outside/, 'old date');
  expectBad(t, () => writeIso9660({ ...base, files: [{ path: 'a', data: Buffer.from('1'), mode: 0o10000 }] }), /permission bits/, 'mode');
  expectBad(t, () => writeIso9660({ ...base, files: [{ path: 'a', data: 'text' as unknown as Buffer }] }), /not bytes/, 'not bytes');
});

t.test('large folders span sectors; long UTF-8 names continue in CE areas; big and empty files', async (t) => {
  const files: IsoFileInput[] = [];
  for (let i = 0; i < 150; i++) files.push({ path: `many/file-${String(i).padStart(3, '0')}.txt`, data: Buffer.from(`n${i}\n`) });
  const longName = 'ü'.repeat(64);
  files.push({ path: `deep/${longName}`, data: Buffer.from('long') });
  files.push({ path: 'big.bin', data: Buffer.alloc(3 * 1024 * 1024 + 17, 0xab) });
  files.push({ path: 'empty', data: Buffer.alloc(0) });
  const iso = writeIso9660({ volumeLabel: 'config-2', files, timestamp: WHEN });
  const read = readIso(iso);
  t.equal(read.rock.size, files.length);
  t.equal(read.joliet.size, files.length);
  for (const f of files) {
    t.ok(read.rock.get(f.path)?.data.equals(f.data), `rock ${f.path.slice(0, 30)}`);
    t.ok(read.joliet.get(f.path)?.data.equals(f.data), `joliet ${f.path.slice(0, 30)}`);
  }
});

t.test('property: any valid file set reads back byte for byte in both hierarchies, deterministically', async (t) => {
  const nameChar = fc.constantFrom(...'abcXYZ019-_. éü漢'.split(''));
  const name = fc.array(nameChar, { minLength: 1, maxLength: 20 }).map((a) => a.join('')).filter((n) => n !== '.' && n !== '..');
  const path = fc.array(name, { minLength: 1, maxLength: 4 }).map((a) => a.join('/'));
  const fileSet = fc.uniqueArray(fc.record({ path, data: fc.uint8Array({ maxLength: 5000 }) }), { selector: (f) => f.path, maxLength: 25 })
    .filter((fs) => fs.every((a) => fs.every((b) => a === b || !b.path.startsWith(a.path + '/'))));
  fc.assert(fc.property(fileSet, (set) => {
    const files = set.map((f) => ({ path: f.path, data: Buffer.from(f.data) }));
    const iso = writeIso9660({ volumeLabel: 'cidata', files, timestamp: WHEN });
    const again = writeIso9660({ volumeLabel: 'cidata', files: [...files].reverse(), timestamp: WHEN });
    if (!iso.equals(again)) return false;
    const read = readIso(iso);
    if (read.rock.size !== files.length || read.joliet.size !== files.length) return false;
    return files.every((f) => read.rock.get(f.path)?.data.equals(f.data) && read.joliet.get(f.path)?.data.equals(f.data));
  }), { numRuns: 150 });
  t.pass('property held');
});
