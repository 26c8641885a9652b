// kiln's ISOs read by independent tools: isoinfo (-d, -l, -R -l, -J -l, -R/-J -x) and xorriso
// (-pvd_info, -find, -osirrox extraction of the Rock Ridge and the Joliet trees), every file
// compared byte for byte, plus the volume label; and a NoCloud seed compared with cloud-localds'.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSeed, seedFiles, writeIso9660, type IsoFileInput, type SeedSpec } from '../../../agent/seed/index.js';
import { run } from '../../../agent/tools/run.js';
import {
  isoinfoDescribe, isoinfoExtract, isoinfoList, modeString, walk, xorrisoExtract, xorrisoFind, xorrisoPvd,
} from './readers.js';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOq4rRBIPGYNg1ZCrEH7V5DsZLqoh7fz0Mp1rT6dCN3d kiln@test';
const CREATED = new Date('2026-05-06T07:08:09Z');
const CAP = 16 * 1024 * 1024;

const dir = mkdtempSync(join(tmpdir(), 'kiln-seed-it-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const USER_DATA = Buffer.from('#cloud-config\n#kiln-say hello from kiln\npackages: [git]\nruncmd:\n  - [sh, -c, "echo ünïcode"]\n');
const NETWORK_V2 = Buffer.from('version: 2\nethernets:\n  id0:\n    match: {name: "en*"}\n    dhcp4: true\n');
const VENDOR = Buffer.from('#cloud-config\nbootcmd: [echo vendor]\n');
const NETWORK_DATA = Buffer.from('{"links":[{"id":"tap0","type":"phy","ethernet_mac_address":"52:54:00:12:34:56"}],"networks":[{"id":"n0","link":"tap0","type":"ipv4_dhcp"}],"services":[]}');

function spec(extra: Partial<SeedSpec>): SeedSpec {
  return { format: 'nocloud', instanceId: 'iid-kiln-1', hostname: 'web1', sshKeys: [KEY], createdAt: CREATED, ...extra };
}

/** Expected files, from the files handed to the writer (the seed's set comes from seedFiles). */
interface Case {
  name: string;
  label: string;
  iso: Buffer;
  files: Array<{ path: string; data: Buffer; mode: number }>;
}

function stressFiles(): IsoFileInput[] {
  const files: IsoFileInput[] = [];
  for (let i = 0; i < 120; i++) files.push({ path: `many/entry-${String(i).padStart(3, '0')}.cfg`, data: Buffer.from(`value ${i}\n`) });
  files.push({ path: '1/2/3/4/5/6/7/deepest.txt', data: Buffer.from('eight levels down\n') });
  files.push({ path: 'Mixed Case/ÄÖÜ straße 漢字.txt', data: Buffer.from('unicode name\n') });
  files.push({ path: `long/${'n'.repeat(60)}.txt`, data: Buffer.from('sixty-four characters\n') });
  files.push({ path: 'long/same-prefix-aaaaaaaa-1', data: Buffer.from('a1\n') });
  files.push({ path: 'long/same-prefix-aaaaaaaa-2', data: Buffer.from('a2\n') });
  files.push({ path: 'big.txt', data: Buffer.from('0123456789abcdef\n'.repeat(200_000)) });
  files.push({ path: 'binary.bin', data: Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 131 + 7) & 0xff)) });
  files.push({ path: 'empty', data: Buffer.alloc(0) });
  files.push({ path: 'run.sh', data: Buffer.from('#!/bin/sh\necho run\n'), mode: 0o755 });
  files.push({ path: 'secret', data: Buffer.from('private\n'), mode: 0o400 });
  return files;
}

const nocloudSpec = spec({ userData: USER_DATA, networkConfig: NETWORK_V2, vendorData: VENDOR });
const configSpec = spec({ format: 'configdrive', userData: USER_DATA, networkConfig: NETWORK_DATA, vendorData: VENDOR, uuid: '0b7c6f3e-1d4e-4c5a-9a57-3c2d1e0f9a8b' });
const stress = stressFiles();

function cases(): Case[] {
  const fromSpec = (name: string, s: SeedSpec): Case => {
    const { label, files } = seedFiles(s, { maxFileBytes: CAP });
    return { name, label, iso: buildSeed(s, { maxFileBytes: CAP }), files: files.map((f) => ({ path: f.path, data: Buffer.from(f.data), mode: f.mode ?? 0o444 })) };
  };
  return [
    fromSpec('nocloud', nocloudSpec),
    fromSpec('configdrive', configSpec),
    {
      name: 'stress', label: 'KILN_STRESS-1', iso: writeIso9660({ volumeLabel: 'KILN_STRESS-1', files: stress, timestamp: CREATED, maxFileBytes: CAP }),
      files: stress.map((f) => ({ path: f.path, data: Buffer.from(f.data), mode: f.mode ?? 0o444 })),
    },
  ];
}

const isUtf8 = (b: Buffer) => {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(b);
    return true;
  } catch {
    return false;
  }
};
const ascii = (s: string) => /^[\x20-\x7e]*$/.test(s);

for (const c of cases()) {
  const path = join(dir, `${c.name}.iso`);
  writeFileSync(path, c.iso);
  const expected = new Map(c.files.map((f) => [f.path, f]));

  t.test(`${c.name}: isoinfo -d sees the label, Joliet and Rock Ridge`, async (t) => {
    const d = await isoinfoDescribe(path);
    t.match(d, new RegExp(`^Volume id: ${c.label}$`, 'm'), 'volume label');
    t.match(d, /Joliet with UCS level 3 found/);
    t.match(d, /Rock Ridge signatures version 1 found/);
    t.match(d, /Logical block size is: 2048/);
    t.match(d, new RegExp(`Volume size is: ${c.iso.length / 2048}\\b`), 'volume size = image size');
    t.match(await xorrisoPvd(path), new RegExp(`Volume Id\\s*: ${c.label}`), 'xorriso reads the same label');
  });

  t.test(`${c.name}: listings (primary, Rock Ridge, Joliet) hold every file with its size and mode`, async (t) => {
    const rock = (await isoinfoList(path, '-R')).filter((e) => !e.dir);
    t.same(rock.map((e) => e.path).sort(), [...expected.keys()].sort(), 'Rock Ridge paths');
    for (const e of rock) {
      const f = expected.get(e.path)!;
      t.equal(e.size, f.data.length, `${e.path} size`);
      t.equal(e.mode, modeString(f.mode), `${e.path} mode`);
    }
    const joliet = (await isoinfoList(path, '-J')).filter((e) => !e.dir);
    t.equal(joliet.length, expected.size, 'Joliet count');
    t.same(joliet.map((e) => e.path).filter(ascii).sort(), [...expected.keys()].filter(ascii).sort(), 'Joliet paths (ASCII; others via xorriso)');
    const primary = await isoinfoList(path, '');
    t.equal(primary.filter((e) => !e.dir).length, expected.size, 'primary count');
    for (const e of primary) {
      const name = e.path.split('/').pop()!;
      t.match(name, e.dir ? /^[A-Z0-9_~]{1,8}$/ : /^[A-Z0-9_~]{1,8}\.[A-Z0-9_]{0,3};1$/, `level-1 name ${e.path}`);
    }
  });

  t.test(`${c.name}: isoinfo -R -x and -J -x give every file byte for byte`, async (t) => {
    for (const f of c.files) {
      if (!isUtf8(f.data)) continue; // binary files: compared after xorriso extraction below
      t.equal(await isoinfoExtract(path, '-R', f.path), f.data.toString('utf8'), `-R ${f.path}`);
      if (ascii(f.path)) t.equal(await isoinfoExtract(path, '-J', f.path), f.data.toString('utf8'), `-J ${f.path}`);
    }
  });

  t.test(`${c.name}: xorriso finds and extracts both trees, every file byte for byte`, async (t) => {
    t.same((await xorrisoFind(path)).sort(), [...expected.keys()].sort(), 'xorriso -find (Rock Ridge)');
    t.same((await xorrisoFind(path, true)).sort(), [...expected.keys()].sort(), 'xorriso -find (Joliet)');
    for (const joliet of [false, true]) {
      const out = join(dir, `${c.name}-${joliet ? 'joliet' : 'rock'}`);
      mkdirSync(out);
      await xorrisoExtract(path, out, joliet);
      const got = walk(out);
      t.same([...got.keys()].sort(), [...expected.keys()].sort(), `${joliet ? 'Joliet' : 'Rock Ridge'} extraction: same paths`);
      for (const [p, f] of expected) {
        t.ok(got.get(p)?.data.equals(f.data), `${joliet ? 'J' : 'R'} ${p} bytes`);
        if (!joliet) t.equal(got.get(p)?.mode, f.mode, `${p} mode restored from Rock Ridge`);
      }
    }
  });
}

t.test('a NoCloud seed holds the same files as cloud-localds makes from the same inputs', async (t) => {
  const inputs = join(dir, 'localds');
  mkdirSync(inputs);
  const md = Buffer.from('instance-id: iid-kiln-1\nlocal-hostname: web1\n');
  writeFileSync(join(inputs, 'ud'), USER_DATA);
  writeFileSync(join(inputs, 'md'), md);
  writeFileSync(join(inputs, 'nc'), NETWORK_V2);
  writeFileSync(join(inputs, 'vd'), VENDOR);
  const theirs = join(dir, 'localds.iso');
  await run('cloud-localds', ['-N', join(inputs, 'nc'), '-V', join(inputs, 'vd'), theirs, join(inputs, 'ud'), join(inputs, 'md')], { timeoutMs: 60_000 });
  const ours = join(dir, 'ours.iso');
  writeFileSync(ours, buildSeed(spec({ userData: USER_DATA, metaData: md, networkConfig: NETWORK_V2, vendorData: VENDOR }), { maxFileBytes: CAP }));
  const label = async (p: string) => /^Volume id: (.*)$/m.exec(await isoinfoDescribe(p))?.[1];
  t.equal(await label(ours), await label(theirs), 'same label');
  const a = join(dir, 'x-ours');
  const b = join(dir, 'x-theirs');
  mkdirSync(a);
  mkdirSync(b);
  await xorrisoExtract(ours, a);
  await xorrisoExtract(theirs, b);
  const mine = walk(a);
  const other = walk(b);
  t.same([...mine.keys()].sort(), [...other.keys()].sort(), 'same file names');
  for (const [p, f] of other) t.ok(mine.get(p)?.data.equals(f.data), `${p} identical`);
});

t.test('the same spec gives byte-identical ISOs, which the tools read identically', async (t) => {
  const a = buildSeed(configSpec, { maxFileBytes: CAP });
  const b = buildSeed({ ...configSpec, createdAt: new Date(CREATED.toISOString()) }, { maxFileBytes: CAP });
  t.ok(a.equals(b), 'byte-identical');
  const pa = join(dir, 'det-a.iso');
  const pb = join(dir, 'det-b.iso');
  writeFileSync(pa, a);
  writeFileSync(pb, b);
  t.equal((await run('cmp', [pa, pb], { timeoutMs: 10_000, okExitCodes: [0, 1] })).exitCode, 0, 'cmp agrees');
  t.match((await isoinfoList(pa, '-R')).find((e) => e.path === 'openstack/latest/user_data')?.mode, '-r--r--r--');
});
