// cloud-init's disable_root answers a root login with "Please login as the user X rather than the
// user root" and exit 142. waitForCloudInit, asked to log in as root (kiln's default), follows
// that to the image's default user, which holds the injected keys, against a real sshd that
// plays the guest with a real second account.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { appendFileSync, chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../../agent/log.js';
import { AgentKeys, waitForCloudInit } from '../../../agent/readiness/index.js';
import { makeSshd, removeDir } from './sshd.js';

const USER = 'kilnguest';

t.test('root is redirected to the default user, which then reports cloud-init done', async (t) => {
  try {
    execFileSync('id', [USER], { stdio: 'ignore' });
  } catch {
    execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/bin/sh', USER]);
  }
  // Without PAM, sshd refuses a locked account ('!'); '*' is "no password" but not locked.
  execFileSync('usermod', ['-p', '*', USER]);
  t.teardown(() => {
    try {
      execFileSync('userdel', [USER], { stdio: 'ignore' });
    } catch { /* already gone */ }
  });
  const keysDir = mkdtempSync(join(tmpdir(), 'kiln-keys-'));
  t.teardown(() => removeDir(keysDir));
  const keys = await AgentKeys.load(keysDir);
  const sshd = await makeSshd([keys.publicKey]);
  t.teardown(async () => {
    await sshd.stop();
    removeDir(sshd.dir);
  });
  // sshd reads authorized_keys with the user's own rights: let the second account read them.
  chmodSync(sshd.dir, 0o755);
  chmodSync(join(sshd.dir, 'authorized_keys'), 0o644);
  chmodSync(join(sshd.dir, 'bin'), 0o755);
  appendFileSync(join(sshd.dir, 'sshd_config'), [
    'Match User root',
    `  ForceCommand echo 'Please login as the user "${USER}" rather than the user "root".'; echo; exit 142`,
    '',
  ].join('\n'));
  sshd.script('cloud-init', `[ "$(id -un)" = "${USER}" ] || { echo "wrong user $(id -un)" >&2; exit 9; }\nprintf 'status: done\\ndetail:\\nDataSourceNoCloud [seed=/dev/sr0]\\n'`);
  await sshd.start();
  const r = await waitForCloudInit({ host: '127.0.0.1', port: sshd.port, username: 'root', privateKey: keys.privateKey }, { timeoutMs: 120_000, log: silentLogger() });
  t.equal(r.status, 'done');
  t.equal(r.username, USER, 'logged in as the default user the guest named');
  t.match(r.detail, /DataSourceNoCloud/);
});
