import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { AgentKeys, generateReadableKey } from '../../../agent/readiness/keys.js';
import { isKilnError } from '../../../agent/errors.js';

const tmp = mkdtempSync(join(tmpdir(), 'kiln-agentkeys-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

t.test('creates an ed25519 key once, private files, and loads the same key again', async (t) => {
  const dir = join(tmp, 'a', 'keys');
  const k1 = await AgentKeys.load(dir);
  t.match(k1.publicKey, /^ssh-ed25519 [A-Za-z0-9+/]+=* kiln@/);
  t.equal(statSync(dir).mode & 0o777, 0o700);
  t.equal(statSync(join(dir, 'id_ed25519')).mode & 0o777, 0o600);
  t.equal(readFileSync(join(dir, 'id_ed25519.pub'), 'utf8').trim(), k1.publicKey);
  const parsed = ssh2.utils.parseKey(k1.privateKey);
  t.notOk(parsed instanceof Error, 'ssh2 can use the private key');
  const k2 = await AgentKeys.load(dir);
  t.equal(k2.publicKey, k1.publicKey, 'never replaced');
  t.ok(k2.privateKey.equals(k1.privateKey));
});

t.test('concurrent first loads agree on one key', async (t) => {
  const dir = join(tmp, 'race');
  const all = await Promise.all([1, 2, 3, 4].map(() => AgentKeys.load(dir)));
  t.equal(new Set(all.map((k) => k.publicKey)).size, 1);
});

t.test('the public half is derived from the private key, not trusted from disk', async (t) => {
  const dir = join(tmp, 'derived');
  const k = await AgentKeys.load(dir);
  writeFileSync(join(dir, 'id_ed25519.pub'), 'ssh-ed25519 AAAAbogus x\n');
  t.equal((await AgentKeys.load(dir)).publicKey, k.publicKey);
});

t.test('an unreadable key is a KILN_CONFIG error, not replaced', async (t) => {
  const dir = join(tmp, 'bad');
  mkdirSync(dir, { mode: 0o700 });
  writeFileSync(join(dir, 'id_ed25519'), 'not a key', { mode: 0o600 });
  const err = await AgentKeys.load(dir).then(() => undefined, (e: unknown) => e);
  t.ok(isKilnError(err, 'KILN_CONFIG'), 'KILN_CONFIG');
  t.equal(readFileSync(join(dir, 'id_ed25519'), 'utf8'), 'not a key');
});

t.test('new keys always read back (ssh2 writes a few it cannot parse)', async (t) => {
  let unreadable = 0;
  for (let i = 0; i < 1500; i++) if (ssh2.utils.parseKey(generateReadableKey()) instanceof Error) unreadable++;
  t.equal(unreadable, 0, '1,500 new keys, all readable');
  let calls = 0;
  const good = ssh2.utils.generateKeyPairSync('ed25519').private;
  const key = generateReadableKey(() => (++calls < 3 ? '-----BEGIN OPENSSH PRIVATE KEY-----\nbroken\n-----END OPENSSH PRIVATE KEY-----\n' : good));
  t.equal(calls, 3, 'unreadable keys are generated again');
  t.equal(key.toString(), good);
});
