// The --host parsing and known_hosts matching of agent/cli/ssh-transport.ts, against known_hosts
// text written by the real ssh-keygen (plain and hashed entries).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KilnError } from '../../../agent/errors.js';
import { checkKnownHosts, parseHostUrl } from '../../../agent/cli/ssh-transport.js';
import { tempDir } from '../api/harness.js';

t.test('parseHostUrl', async (t) => {
  t.same(parseHostUrl('ssh://ops@hv1.example:2222'), { user: 'ops', host: 'hv1.example', port: 2222 });
  t.same(parseHostUrl('ssh://ops@10.0.0.5'), { user: 'ops', host: '10.0.0.5', port: 22 });
  t.same(parseHostUrl('ssh://ops@[::1]:22/'), { user: 'ops', host: '::1', port: 22 });
  for (const bad of ['hv1', 'http://hv1', 'ssh://a@b:0', 'ssh://a@b:99999', 'ssh://a@b/c', 'ssh://']) {
    let code: string | undefined;
    try {
      parseHostUrl(bad);
    } catch (e) {
      code = (e as KilnError).code;
    }
    t.equal(code, 'KILN_BAD_REQUEST', bad);
  }
});

t.test('checkKnownHosts: plain, wildcard, negated, hashed, revoked', async (t) => {
  const dir = tempDir(t, 'kiln-kh-');
  const keygen = (n: string) => {
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, n)]);
    const [type, b64] = readFileSync(join(dir, `${n}.pub`), 'utf8').split(' ');
    return { line: `${type} ${b64}`, blob: Buffer.from(b64!, 'base64') };
  };
  const a = keygen('a');
  const b = keygen('b');
  t.same(checkKnownHosts([`hv1,hv2 ${a.line}\n`], 'hv2', 22, a.blob), { ok: true });
  t.same(checkKnownHosts([`hv1 ${a.line}\n`], 'hv1', 2222, a.blob), { ok: false, reason: 'unknown' }, 'a port other than 22 needs [host]:port');
  t.same(checkKnownHosts([`[hv1]:2222 ${a.line}\n`], 'hv1', 2222, a.blob), { ok: true });
  t.same(checkKnownHosts([`[hv1]:2222 ${a.line}\n`], 'hv1', 2222, b.blob), { ok: false, reason: 'mismatch' });
  t.same(checkKnownHosts([`*.lab,!bad.lab ${a.line}\n`], 'good.lab', 22, a.blob), { ok: true });
  t.same(checkKnownHosts([`*.lab,!bad.lab ${a.line}\n`], 'bad.lab', 22, a.blob), { ok: false, reason: 'unknown' });
  t.same(checkKnownHosts([`# comment\n\n@cert-authority *.lab ${b.line}\nhv1 ${a.line}\n`], 'hv1', 22, a.blob), { ok: true });
  t.same(checkKnownHosts([`@revoked * ${a.line}\nhv1 ${a.line}\n`], 'hv1', 22, a.blob), { ok: false, reason: 'revoked' });
  t.same(checkKnownHosts(['', `hv1 ${a.line}\n`], 'hv1', 22, a.blob), { ok: true }, 'several files');
  // Hashed by ssh-keygen -H, the way ssh's HashKnownHosts writes them.
  const kh = join(dir, 'known_hosts');
  writeFileSync(kh, `[10.1.2.3]:2200 ${a.line}\nhv9 ${b.line}\n`);
  t.equal(spawnSync('ssh-keygen', ['-H', '-f', kh]).status, 0);
  const hashed = readFileSync(kh, 'utf8');
  t.notMatch(hashed, /10\.1\.2\.3|hv9/, 'no host name left in clear');
  t.same(checkKnownHosts([hashed], '10.1.2.3', 2200, a.blob), { ok: true });
  t.same(checkKnownHosts([hashed], 'hv9', 22, b.blob), { ok: true });
  t.same(checkKnownHosts([hashed], 'hv9', 22, a.blob), { ok: false, reason: 'mismatch' });
  t.same(checkKnownHosts([hashed], 'hv8', 22, a.blob), { ok: false, reason: 'unknown' });
});
