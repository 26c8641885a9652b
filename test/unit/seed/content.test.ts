import t from 'tap';
import {
  checkHostname, checkInstanceId, checkNetworkConfig, checkNetworkData, checkSshKey, checkUserData, checkUuid,
  hasCloudConfigHeader, parseMetaData,
} from '../../../agent/seed/content.js';
import { expectBad } from './helpers.js';

const b = (s: string) => Buffer.from(s, 'utf8');

t.test('cloud-config header detection is exact', async (t) => {
  t.ok(hasCloudConfigHeader(b('#cloud-config\n')));
  t.ok(hasCloudConfigHeader(b('#cloud-config\r\nx: 1')));
  t.ok(hasCloudConfigHeader(b('#cloud-config')));
  t.notOk(hasCloudConfigHeader(b('#cloud-config-archive\n- a')), 'archive is another format');
  t.notOk(hasCloudConfigHeader(b('#!/bin/sh\n')));
  t.notOk(hasCloudConfigHeader(b(' #cloud-config\n')));
});

t.test('user-data: cloud-config is validated, everything else passes', async (t) => {
  t.doesNotThrow(() => checkUserData('user-data', b('#cloud-config\n')), 'empty cloud-config');
  t.doesNotThrow(() => checkUserData('user-data', b('#cloud-config\npackages: [git]\nruncmd:\n  - [sh, -c, "echo hi"]\n')));
  t.doesNotThrow(() => checkUserData('user-data', b('#!/bin/sh\necho {[ not yaml\n')), 'shell script');
  t.doesNotThrow(() => checkUserData('user-data', b('Content-Type: multipart/mixed; boundary="==B=="\nMIME-Version: 1.0\n\n--==B==\n')), 'MIME');
  t.doesNotThrow(() => checkUserData('user-data', Buffer.from([0x1f, 0x8b, 0x08, 0, 0xff])), 'gzip bytes');
  expectBad(t, () => checkUserData('user-data', b('#cloud-config\nusers: [\n')), /not valid YAML/, 'unclosed flow');
  expectBad(t, () => checkUserData('user-data', b('#cloud-config\na: 1\n  b: 2\n')), /not valid YAML/, 'bad indentation');
  expectBad(t, () => checkUserData('user-data', b('#cloud-config\n- a\n- b\n')), /not a mapping/, 'list');
  expectBad(t, () => checkUserData('user-data', b('#cloud-config\na: 1\n---\nb: 2\n')), /2 YAML documents/, 'two documents');
  expectBad(t, () => checkUserData('user-data', b('#cloud-config\nx: !!python/object:os.system ls\n')), /not valid YAML/, 'unsafe tag');
  expectBad(t, () => checkUserData('vendor-data', Buffer.from([0x23, 0x63, 0x6c, 0x6f, 0x75, 0x64, 0x2d, 0x63, 0x6f, 0x6e, 0x66, 0x69, 0x67, 0x0a, 0xff, 0xfe])), /UTF-8/, 'not UTF-8');
  try {
    checkUserData('user-data', b('#cloud-config\nok: 1\nbad: [1, 2\n'));
  } catch (e) {
    const d = (e as { details: Record<string, unknown>; message: string });
    t.equal(d.details.file, 'user-data');
    t.type(d.details.line, 'number', 'the error names the line');
    t.match(d.message, /^user-data is not valid YAML/);
  }
});

t.test('network-config needs a version 1 or 2', async (t) => {
  t.equal(checkNetworkConfig('network-config', b('version: 2\nethernets:\n  eth0:\n    dhcp4: true\n')), 2);
  t.equal(checkNetworkConfig('network-config', b('network:\n  version: 1\n  config:\n    - type: physical\n      name: eth0\n')), 1);
  t.equal(checkNetworkConfig('network-config', b('{"version": 2, "ethernets": {}}')), 2, 'JSON is YAML');
  expectBad(t, () => checkNetworkConfig('network-config', b('ethernets:\n  eth0:\n    dhcp4: true\n')), /no version key/, 'no version');
  expectBad(t, () => checkNetworkConfig('network-config', b('version: 3\n')), /version 3/, 'version 3');
  expectBad(t, () => checkNetworkConfig('network-config', b('version: "2"\n')), /version "2"/, 'string version');
  expectBad(t, () => checkNetworkConfig('network-config', b('- version: 2\n')), /mapping/, 'list');
  expectBad(t, () => checkNetworkConfig('network-config', b('version: [2\n')), /not valid YAML/, 'broken');
});

t.test('config-drive network_data.json', async (t) => {
  t.doesNotThrow(() => checkNetworkData('network-config', b('{"links":[],"networks":[],"services":[]}')));
  expectBad(t, () => checkNetworkData('network-config', b('version: 2\nethernets: {}\n')), /config-drive reads OpenStack network_data.json/, 'netplan given');
  expectBad(t, () => checkNetworkData('network-config', b('{"networks":[]}')), /"links" list/, 'no links');
  expectBad(t, () => checkNetworkData('network-config', b('{nope')), /not valid JSON/, 'not JSON');
});

t.test('meta-data and identity fields', async (t) => {
  t.same(parseMetaData('meta-data', b('instance-id: i-1\nlocal-hostname: web\n')), { 'instance-id': 'i-1', 'local-hostname': 'web' });
  expectBad(t, () => parseMetaData('meta-data', b('just a string\n')), /mapping/, 'scalar meta-data');
  t.equal(checkInstanceId('iid-local01'), 'iid-local01');
  t.equal(checkInstanceId('0b7c6f3e-1d4e-4c5a-9a57-3c2d1e0f9a8b'), '0b7c6f3e-1d4e-4c5a-9a57-3c2d1e0f9a8b');
  expectBad(t, () => checkInstanceId('../etc'), /invalid instance-id/, 'slash');
  expectBad(t, () => checkInstanceId(''), /invalid instance-id/, 'empty');
  expectBad(t, () => checkInstanceId('a b'), /invalid instance-id/, 'space');
  t.equal(checkHostname('web-1.example.com'), 'web-1.example.com');
  expectBad(t, () => checkHostname('-web'), /invalid hostname/, 'leading dash');
  expectBad(t, () => checkHostname('a_b'), /invalid hostname/, 'underscore');
  expectBad(t, () => checkHostname('x'.repeat(64)), /invalid hostname/, 'long label');
  t.equal(checkUuid('0B7C6F3E-1D4E-4C5A-9A57-3C2D1E0F9A8B'), '0b7c6f3e-1d4e-4c5a-9a57-3c2d1e0f9a8b');
  expectBad(t, () => checkUuid('not-a-uuid'), /invalid uuid/, 'uuid');
  const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOq4rRBIPGYNg1ZCrEH7V5DsZLqoh7fz0Mp1rT6dCN3d kiln@test';
  t.equal(checkSshKey(`  ${key}\n`), key, 'trimmed');
  expectBad(t, () => checkSshKey(`${key}\nssh-rsa AAAA`), /invalid SSH public key/, 'two lines');
  expectBad(t, () => checkSshKey('-----BEGIN OPENSSH PRIVATE KEY-----'), /invalid SSH public key/, 'private key');
  expectBad(t, () => checkSshKey('ssh-ed25519 not*base64'), /invalid SSH public key/, 'bad body');
});
