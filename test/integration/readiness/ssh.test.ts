// readiness against a real OpenSSH sshd on loopback: waitForCloudInit's verdicts (done, error,
// timeout with the console tail, retries while sshd is down or cloud-init still runs), host key
// checking (first use, known key, console keys, mismatch), and runOverSsh.
import t from 'tap';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../../agent/log.js';
import { isKilnError, type KilnError } from '../../../agent/errors.js';
import { AgentKeys, hostKeysFromConsole, runOverSsh, waitForCloudInit, type SshTarget } from '../../../agent/readiness/index.js';
import { makeSshd, removeDir, type Sshd } from './sshd.js';

const log = silentLogger();
const keysDir = mkdtempSync(join(tmpdir(), 'kiln-keys-'));
t.teardown(() => removeDir(keysDir));
const keys = await AgentKeys.load(join(keysDir, 'agent'));
const stranger = await AgentKeys.load(join(keysDir, 'stranger'));

const sshd: Sshd = await makeSshd([keys.publicKey]);
t.teardown(async () => {
  await sshd.stop();
  removeDir(sshd.dir);
});
await sshd.start();

const target = (over: Partial<SshTarget> = {}): SshTarget => ({
  host: '127.0.0.1',
  port: sshd.port,
  username: 'root',
  privateKey: keys.privateKey,
  ...over,
});

const DONE = `printf '....\\n'\nprintf 'status: done\\ntime: Fri, 27 Nov 2026 09:00:00 +0000\\ndetail:\\nDataSourceNoCloud [seed=/dev/sr0][dsmode=net]\\n'`;

async function rejection(p: Promise<unknown>): Promise<KilnError> {
  try {
    await p;
  } catch (err) {
    if (isKilnError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

t.test('done: reports cloud-init detail and the host key accepted on first use', async (t) => {
  sshd.script('cloud-init', `[ "$*" = "status --wait --long" ] || { echo "bad args: $*" >&2; exit 9; }\n${DONE}`);
  const r = await waitForCloudInit(target(), { timeoutMs: 20_000, log });
  t.equal(r.status, 'done');
  t.match(r.detail, /^status: done/);
  t.match(r.detail, /DataSourceNoCloud \[seed=\/dev\/sr0\]/);
  t.notMatch(r.detail, /\.\.\.\./, 'progress dots dropped');
  t.equal(r.hostKey, sshd.hostKey, 'the host key the server really has');
});

t.test('a known host key (as cloud-init prints it on the console) is accepted', async (t) => {
  sshd.script('cloud-init', DONE);
  const console = `[  OK  ] Started ssh.service\r\n-----BEGIN SSH HOST KEY KEYS-----\r\necdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg= root@guest\r\n${sshd.hostKey} root@guest\r\n-----END SSH HOST KEY KEYS-----\r\n`;
  const known = hostKeysFromConsole(console);
  t.equal(known.length, 2);
  const r = await waitForCloudInit(target({ knownHostKey: known.join('\n') }), { timeoutMs: 20_000, log });
  t.equal(r.hostKey, sshd.hostKey);
});

t.test('host key mismatch fails at once with KILN_GUEST_FAILED', async (t) => {
  sshd.script('cloud-init', DONE);
  const started = Date.now();
  const err = await rejection(waitForCloudInit(target({ knownHostKey: stranger.publicKey }), {
    timeoutMs: 30_000, log, consoleTail: async () => 'console says hi',
  }));
  t.equal(err.code, 'KILN_GUEST_FAILED');
  t.equal(err.details.reason, 'host-key-mismatch');
  t.equal(err.details.presentedHostKey, sshd.hostKey);
  t.equal(err.details.consoleTail, 'console says hi');
  t.ok(Date.now() - started < 10_000, 'no retrying until the deadline');
});

t.test('cloud-init error: KILN_GUEST_FAILED with cloud-init detail and the console tail', async (t) => {
  sshd.script('cloud-init', `printf "status: error\\ntime: now\\ndetail:\\n('scripts_user', RuntimeError('runparts: 1 failed'))\\n"\nexit 1`);
  const err = await rejection(waitForCloudInit(target(), {
    timeoutMs: 20_000, log, consoleTail: async () => 'x'.repeat(10_000) + 'LAST-LINE',
  }));
  t.equal(err.code, 'KILN_GUEST_FAILED');
  t.equal(err.details.reason, 'cloud-init-error');
  t.equal(err.details.status, 'error');
  t.equal(err.details.exitCode, 1);
  t.match(String(err.details.detail), /scripts_user/);
  t.match(String(err.details.consoleTail), /LAST-LINE$/);
  t.ok(String(err.details.consoleTail).length <= 4000, 'console tail is capped');
});

t.test('still running: asks again until cloud-init is done', async (t) => {
  const counter = join(sshd.dir, 'calls');
  sshd.script('cloud-init', `n=$(cat ${counter} 2>/dev/null || echo 0); n=$((n + 1)); echo $n >${counter}\nif [ $n -lt 3 ]; then echo 'status: running'; exit 0; fi\n${DONE}`);
  const r = await waitForCloudInit(target(), { timeoutMs: 30_000, log, retryMs: 100 });
  t.equal(r.status, 'done');
  t.equal(readFileSync(counter, 'utf8').trim(), '3', 'asked three times');
});

t.test('no cloud-init in the guest: KILN_GUEST_FAILED cloud-init-missing', async (t) => {
  sshd.removeScript('cloud-init');
  const err = await rejection(waitForCloudInit(target(), { timeoutMs: 20_000, log }));
  t.equal(err.code, 'KILN_GUEST_FAILED');
  t.equal(err.details.reason, 'cloud-init-missing');
});

t.test('timeout while cloud-init hangs: KILN_TIMEOUT with console tail, on time', async (t) => {
  sshd.script('cloud-init', 'exec sleep 60');
  const started = Date.now();
  const err = await rejection(waitForCloudInit(target(), { timeoutMs: 2500, log, consoleTail: async () => 'booting...' }));
  const elapsed = Date.now() - started;
  t.equal(err.code, 'KILN_TIMEOUT');
  t.equal(err.details.consoleTail, 'booting...');
  t.ok(elapsed >= 2400 && elapsed < 8000, `gave up after ${elapsed} ms`);
});

t.test('a key the guest does not trust: retries, then KILN_TIMEOUT naming auth', async (t) => {
  sshd.script('cloud-init', DONE);
  const err = await rejection(waitForCloudInit(target({ privateKey: stranger.privateKey }), { timeoutMs: 3000, log, retryMs: 200 }));
  t.equal(err.code, 'KILN_TIMEOUT');
  t.equal(err.details.lastFailure, 'auth');
  t.ok(Number(err.details.attempts) >= 2, `attempts ${err.details.attempts}`);
  t.match(String(err.details.lastError), /authentication/);
});

t.test('sshd not up yet: keeps retrying, succeeds once it listens', async (t) => {
  sshd.script('cloud-init', DONE);
  await sshd.stop();
  const wait = waitForCloudInit(target(), { timeoutMs: 30_000, log, retryMs: 200 });
  await new Promise((r) => setTimeout(r, 1500));
  await sshd.start();
  const r = await wait;
  t.equal(r.status, 'done');
});

t.test('nothing listening at all: KILN_TIMEOUT naming the connection failure', async (t) => {
  const err = await rejection(waitForCloudInit(target({ port: 1 }), { timeoutMs: 1500, log, retryMs: 200 }));
  t.equal(err.code, 'KILN_TIMEOUT');
  t.equal(err.details.lastFailure, 'connect');
  t.match(String(err.details.lastError), /ECONNREFUSED/);
  t.equal(err.details.consoleTail, '');
});

t.test('runOverSsh returns exit status, stdout and stderr', async (t) => {
  const r = await runOverSsh(target(), "echo out; echo err >&2; printf 'two\\nlines\\n'; exit 3", 15_000);
  t.equal(r.code, 3);
  t.equal(r.stdout, 'out\ntwo\nlines\n');
  t.equal(r.stderr, 'err\n');
  const ok = await runOverSsh(target(), 'id -u', 15_000);
  t.same(ok, { code: 0, stdout: '0\n', stderr: '' });
});

t.test('runOverSsh: timeout and host key mismatch are KilnErrors', async (t) => {
  const slow = await rejection(runOverSsh(target(), 'sleep 30', 1500));
  t.equal(slow.code, 'KILN_TIMEOUT');
  const wrong = await rejection(runOverSsh(target({ knownHostKey: stranger.publicKey }), 'true', 15_000));
  t.equal(wrong.code, 'KILN_GUEST_FAILED');
  t.equal(wrong.details.reason, 'host-key-mismatch');
  const refused = await rejection(runOverSsh(target({ port: 1 }), 'true', 5000));
  t.equal(refused.code, 'KILN_GUEST_FAILED');
  t.equal(refused.details.reason, 'connect');
});
