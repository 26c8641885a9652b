import t from 'tap';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { buildSeed, seedFiles, writeSeedFile, type SeedSpec } from '../../../agent/seed/index.js';
import { isKilnError } from '../../../agent/errors.js';
import { readIso } from './iso-reader.js';
import { expectBad, expectBadAsync } from './helpers.js';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOq4rRBIPGYNg1ZCrEH7V5DsZLqoh7fz0Mp1rT6dCN3d kiln@test';
const CREATED = new Date('2026-05-06T07:08:09Z');
const CAP = 64 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function spec(extra: Partial<SeedSpec> = {}): SeedSpec {
  return { format: 'nocloud', instanceId: 'i-0001', hostname: 'web1', sshKeys: [KEY], createdAt: CREATED, ...extra };
}

t.test('nocloud: label cidata, generated meta-data, default user-data', async (t) => {
  const iso = buildSeed(spec(), { maxFileBytes: CAP });
  const read = readIso(iso);
  t.equal(read.label, 'cidata');
  t.same([...read.rock.keys()].sort(), ['meta-data', 'user-data']);
  t.equal(read.rock.get('user-data')!.data.toString(), '#cloud-config\n');
  t.same(parse(read.rock.get('meta-data')!.data.toString()), { 'instance-id': 'i-0001', 'local-hostname': 'web1', 'public-keys': [KEY] });
});

t.test('nocloud: user files pass through byte for byte', async (t) => {
  const userData = Buffer.from('#!/bin/sh\r\necho "hi" \u00e9\n\n', 'utf8');
  const networkConfig = Buffer.from('version: 2\nethernets:\n  id0:\n    match: {name: "e*"}\n    dhcp4: true\n');
  const vendorData = Buffer.from('#cloud-config\npackages: []\n');
  const metaData = Buffer.from('# operator comment\ninstance-id: "custom"\n');
  const read = readIso(buildSeed(spec({ userData, networkConfig, vendorData, metaData }), { maxFileBytes: CAP }));
  t.same(read.rock.get('user-data')!.data, userData);
  t.same(read.rock.get('network-config')!.data, networkConfig);
  t.same(read.rock.get('vendor-data')!.data, vendorData);
  t.same(read.rock.get('meta-data')!.data, metaData, 'meta-data override as given');
});

t.test('config-drive: openstack and ec2 trees as cloud-init reads them', async (t) => {
  const userData = Buffer.from('#cloud-config\n#kiln-say hi\n');
  const networkData = Buffer.from('{"links":[{"id":"eth0","type":"phy","ethernet_mac_address":"52:54:00:12:34:56"}],"networks":[],"services":[]}');
  const uuid = '0b7c6f3e-1d4e-4c5a-9a57-3c2d1e0f9a8b';
  const iso = buildSeed(spec({ format: 'configdrive', userData, networkConfig: networkData, vendorData: Buffer.from('#cloud-config\n'), uuid }), { maxFileBytes: CAP });
  const read = readIso(iso);
  t.equal(read.label, 'config-2');
  for (const v of ['latest', '2015-10-15']) {
    const md = JSON.parse(read.rock.get(`openstack/${v}/meta_data.json`)!.data.toString());
    t.equal(md.uuid, uuid, `${v} uuid`);
    t.equal(md.hostname, 'web1');
    t.same(md.public_keys, { 'key-1': KEY });
    t.same(md.keys, [{ name: 'key-1', type: 'ssh', data: KEY }]);
    t.same(read.rock.get(`openstack/${v}/user_data`)!.data, userData);
    t.same(read.rock.get(`openstack/${v}/network_data.json`)!.data, networkData);
    t.same(JSON.parse(read.rock.get(`openstack/${v}/vendor_data.json`)!.data.toString()), { 'cloud-init': '#cloud-config\n' });
  }
  for (const v of ['latest', '2009-04-04']) {
    const md = JSON.parse(read.rock.get(`ec2/${v}/meta-data.json`)!.data.toString());
    t.equal(md['instance-id'], 'i-0001');
    t.same(md['public-keys'], { 0: { 'openssh-key': KEY } });
    t.same(read.rock.get(`ec2/${v}/user-data`)!.data, userData);
  }
  const noUuid = readIso(buildSeed(spec({ format: 'configdrive' }), { maxFileBytes: CAP }));
  t.equal(JSON.parse(noUuid.rock.get('openstack/latest/meta_data.json')!.data.toString()).uuid, 'i-0001', 'uuid defaults to the instance-id');
  t.same(JSON.parse(noUuid.rock.get('openstack/latest/vendor_data.json')!.data.toString()), {}, 'empty vendor data');
  t.notOk(noUuid.rock.has('openstack/latest/network_data.json'), 'no network_data.json unless given (cloud-init then uses its fallback)');
});

t.test('deterministic for both formats', async (t) => {
  for (const format of ['nocloud', 'configdrive'] as const) {
    const a = buildSeed(spec({ format, userData: Buffer.from('#cloud-config\n') }), { maxFileBytes: CAP });
    const b = buildSeed(spec({ format, userData: Buffer.from('#cloud-config\n'), createdAt: new Date(CREATED.getTime()) }), { maxFileBytes: CAP });
    t.equal(sha(a), sha(b), `${format}: same bytes`);
    t.not(sha(a), sha(buildSeed(spec({ format, instanceId: 'i-0002' }), { maxFileBytes: CAP })), `${format}: identity changes the bytes`);
  }
});

t.test('bad inputs: KILN_BAD_REQUEST with the reason', async (t) => {
  const o = { maxFileBytes: CAP };
  expectBad(t, () => buildSeed(spec({ userData: Buffer.from('#cloud-config\nruncmd: [\n') }), o), /not valid YAML/, 'invalid cloud-config');
  expectBad(t, () => buildSeed(spec({ networkConfig: Buffer.from('ethernets: {}\n') }), o), /no version key/, 'network-config without version');
  expectBad(t, () => buildSeed(spec({ userData: Buffer.alloc(CAP + 1, 0x41) }), o), /over the size cap/, 'user-data over the cap');
  expectBad(t, () => buildSeed(spec({ vendorData: Buffer.alloc(CAP + 1, 0x41) }), o), /over the size cap/, 'vendor-data over the cap');
  expectBad(t, () => buildSeed(spec({ sshKeys: Array.from({ length: 2000 }, () => KEY) }), { maxFileBytes: 4096 }), /over the cap/, 'generated meta-data over the cap');
  expectBad(t, () => buildSeed(spec({ format: 'configdrive', networkConfig: Buffer.from('version: 2\n') }), o), /network_data.json/, 'netplan on config-drive');
  expectBad(t, () => buildSeed(spec({ format: 'configdrive', metaData: Buffer.from('instance-id: x\n') }), o), /meta-data override/, 'meta-data on config-drive');
  expectBad(t, () => buildSeed(spec({ format: 'configdrive', vendorData: Buffer.from([0xff, 0xfe]) }), o), /not UTF-8/, 'binary vendor data on config-drive');
  expectBad(t, () => buildSeed(spec({ format: 'iso' as never }), o), /unknown seed format/, 'format');
  expectBad(t, () => buildSeed(spec({ instanceId: 'a/b' }), o), /instance-id/, 'instance-id');
  expectBad(t, () => buildSeed(spec({ hostname: 'bad_host' }), o), /hostname/, 'hostname');
  expectBad(t, () => buildSeed(spec({ sshKeys: ['nope'] }), o), /SSH/, 'ssh key');
  expectBad(t, () => buildSeed(spec({ uuid: 'x' }), o), /uuid/, 'uuid');
  expectBad(t, () => buildSeed(spec({ createdAt: new Date(NaN) }), o), /invalid date/, 'date');
  expectBad(t, () => buildSeed(spec({ metaData: Buffer.from('[1, 2]') }), o), /mapping/, 'meta-data list');
});

t.test('seedFiles lists what buildSeed writes', async (t) => {
  const { label, files } = seedFiles(spec({ format: 'configdrive' }), { maxFileBytes: CAP });
  t.equal(label, 'config-2');
  const read = readIso(buildSeed(spec({ format: 'configdrive' }), { maxFileBytes: CAP }));
  t.same(files.map((f) => f.path).sort(), [...read.rock.keys()].sort());
});

t.test('writeSeedFile: 0600, atomic replace, no temp left, bad paths refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-seed-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'seed.iso');
  writeFileSync(path, 'old', { mode: 0o644 });
  const iso = buildSeed(spec(), { maxFileBytes: CAP });
  await writeSeedFile(path, iso);
  t.equal(statSync(path).mode & 0o777, 0o600);
  t.same(readFileSync(path), iso);
  t.same(readdirSync(dir), ['seed.iso'], 'no temp files left');
  await expectBadAsync(t, () => writeSeedFile(join(dir, 'missing', 'seed.iso'), iso), /unwritable path/, 'missing folder');
  // A file in place of the folder fails for root too (root ignores folder modes).
  writeFileSync(join(dir, 'file'), 'x');
  await expectBadAsync(t, () => writeSeedFile(join(dir, 'file', 'seed.iso'), iso), /unwritable path/, 'not a folder');
  t.same(readdirSync(dir).sort(), ['file', 'seed.iso'], 'failed writes leave nothing behind');
  t.ok(isKilnError(await writeSeedFile(join(dir, 'missing', 'x.iso'), iso).catch((e: unknown) => e), 'KILN_BAD_REQUEST'));
});
