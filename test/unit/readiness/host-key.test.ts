import t from 'tap';
import ssh2 from 'ssh2';
import { blobToLine, blobType, fingerprint, hostKeyMatches, hostKeysFromConsole, knownKeys, parsePublicKeyLine } from '../../../agent/readiness/host-key.js';

const { utils } = ssh2;
const a = utils.generateKeyPairSync('ed25519', { comment: 'a@x' }).public;
const b = utils.generateKeyPairSync('ecdsa', { bits: 256, comment: 'b@x' }).public;
const blobOf = (line: string) => Buffer.from(line.split(' ')[1]!, 'base64');

t.test('parsePublicKeyLine accepts real keys and refuses look-alikes', async (t) => {
  const p = parsePublicKeyLine(`  ${a}  `);
  t.equal(p?.type, 'ssh-ed25519');
  t.equal(p?.comment, 'a@x');
  t.equal(parsePublicKeyLine(b)?.type, 'ecdsa-sha2-nistp256');
  t.equal(parsePublicKeyLine('ssh-ed25519'), undefined, 'no blob');
  t.equal(parsePublicKeyLine('ssh-foo AAAA'), undefined, 'unknown type');
  t.equal(parsePublicKeyLine(`ssh-rsa ${a.split(' ')[1]}`), undefined, 'type disagrees with the blob');
  t.equal(parsePublicKeyLine('ssh-ed25519 not*base64'), undefined);
});

t.test('blob helpers round-trip a key line', async (t) => {
  const blob = blobOf(a);
  t.equal(blobType(blob), 'ssh-ed25519');
  t.equal(blobToLine(blob), a.split(' ').slice(0, 2).join(' '));
  t.equal(blobType(Buffer.from([0, 0, 0])), undefined);
  t.equal(blobType(Buffer.from([0, 0, 0, 200, 1])), undefined, 'length beyond the buffer');
  t.match(fingerprint(a), /^SHA256:[A-Za-z0-9+/]{43}$/);
  t.equal(fingerprint(a), fingerprint(blob));
  t.not(fingerprint(a), fingerprint(b));
});

t.test('hostKeyMatches compares blobs against every known key', async (t) => {
  const known = knownKeys(`${b}\n\ngarbage line\n${a}\n`);
  t.equal(known.length, 2);
  t.ok(hostKeyMatches(blobOf(a), known));
  t.ok(hostKeyMatches(blobOf(b), known));
  const other = utils.generateKeyPairSync('ed25519').public;
  t.notOk(hostKeyMatches(blobOf(other), known));
  t.notOk(hostKeyMatches(blobOf(a), []));
});

t.test('hostKeysFromConsole reads the last cloud-init host key block', async (t) => {
  const block = (keys: string[]) => ['-----BEGIN SSH HOST KEY KEYS-----', ...keys, '-----END SSH HOST KEY KEYS-----'].join('\r\n');
  const text = [
    '[   12.1] cloud-init[400]: Cloud-init v. 22.4.2 running',
    block([b]),
    'reboot...',
    `ci-info: no authorized SSH keys fingerprints found for user debian.`,
    block([`[   99.9] cloud-init[812]: ${b}`, a, 'not a key']),
    'after',
  ].join('\r\n');
  t.same(hostKeysFromConsole(text), [b, a].map((k) => k.split(' ').slice(0, 2).join(' ')));
  t.same(hostKeysFromConsole('no keys here'), []);
  t.same(hostKeysFromConsole(`-----BEGIN SSH HOST KEY KEYS-----\n${a}\n`), [], 'an unfinished block is not trusted');
});
