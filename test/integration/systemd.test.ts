// The systemd unit as installed by scripts/install-host: `systemd-analyze verify` passes with no
// warning, `systemd-analyze security --offline=true` scores it 4.0 or lower ("OK") and the README
// section states the same score; sysusers/tmpfiles entries apply; and kilnd really speaks the
// Type=notify protocol (READY=1 and STATUS= on NOTIFY_SOCKET) when started like systemd would.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const repo = new URL('../../', import.meta.url).pathname;
const unitPath = join(repo, 'systemd/kilnd.service');

function tmp(t: Tap.Test, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
declare namespace Tap { type Test = import('tap').Test }

function stage(t: Tap.Test): string {
  const root = tmp(t, 'kiln-root-');
  const r = spawnSync(join(repo, 'scripts/install-host'), ['--root', root, '--deps', 'none'], { encoding: 'utf8' });
  t.equal(r.status, 0, `install-host --root succeeds: ${r.stderr}`);
  return root;
}

t.test('install-host stages the unit, wrappers, sysusers, tmpfiles and completion', async (t) => {
  const root = stage(t);
  for (const f of ['usr/bin/kilnd', 'usr/bin/kiln']) {
    t.ok(statSync(join(root, f)).mode & 0o111, `${f} is executable`);
    t.match(readFileSync(join(root, f), 'utf8'), /\/usr\/lib\/kiln\/build\/agent\//);
  }
  t.ok(existsSync(join(root, 'usr/lib/kiln/build/agent/main.js')), 'daemon installed');
  t.equal(readFileSync(join(root, 'usr/lib/systemd/system/kilnd.service'), 'utf8'), readFileSync(unitPath, 'utf8'));
  t.match(readFileSync(join(root, 'usr/share/bash-completion/completions/kiln'), 'utf8'), /complete -F _kiln kiln/);
});

t.test('systemd-analyze verify passes without a warning', async (t) => {
  const root = stage(t);
  // verify --root resolves everything inside the root: give it the host's own units (targets).
  for (const e of readdirSync('/usr/lib/systemd/system')) {
    if (e !== 'kilnd.service') cpSync(join('/usr/lib/systemd/system', e), join(root, 'usr/lib/systemd/system', e), { recursive: true, verbatimSymlinks: true });
  }
  const r = spawnSync('systemd-analyze', ['verify', `--root=${root}`, 'kilnd.service'], { encoding: 'utf8' });
  t.equal(r.status, 0, 'exit status 0');
  t.equal(r.stderr.trim(), '', 'no warnings');
  t.equal(r.stdout.trim(), '', 'nothing printed');
  // The check has teeth: a unit whose ExecStart is missing fails.
  rmSync(join(root, 'usr/bin/kilnd'));
  const broken = spawnSync('systemd-analyze', ['verify', `--root=${root}`, 'kilnd.service'], { encoding: 'utf8' });
  t.not(broken.status, 0, 'a missing ExecStart fails verify');
});

t.test('the unit is Type=notify with the thread pool and hardening the README promises', async (t) => {
  const unit = readFileSync(unitPath, 'utf8');
  for (const line of ['Type=notify', 'Environment=UV_THREADPOOL_SIZE=16', 'RuntimeDirectory=kiln', 'StateDirectory=kiln', 'NoNewPrivileges=yes',
    'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes', 'CapabilityBoundingSet=', 'WatchdogSec=']) {
    t.match(unit, new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm'), line);
  }
  t.match(unit, /^SystemCallFilter=@system-service$/m);
});

t.test('systemd-analyze security --offline=true: exposure <= 4.0 "OK", as the README says', async (t) => {
  const r = spawnSync('systemd-analyze', ['security', '--offline=true', unitPath], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const m = /Overall exposure level for kilnd\.service: (\d+\.\d+) (\w+)/.exec(r.stdout + r.stderr);
  t.ok(m, 'an exposure line is printed');
  const score = Number(m![1]);
  t.ok(score <= 4.0, `exposure ${score} <= 4.0`);
  t.equal(m![2], 'OK');
  const doc = readFileSync(join(repo, 'README.md'), 'utf8');
  t.match(doc, new RegExp(`exposure level for kilnd\\.service: ${m![1].replace('.', '\\.')} OK`), 'the README section states the measured score');
});

t.test('sysusers and tmpfiles entries create the user, groups and private folders', async (t) => {
  const root = tmp(t, 'kiln-sys-');
  mkdirSync(join(root, 'etc'));
  const u = spawnSync('systemd-sysusers', [`--root=${root}`, join(repo, 'systemd/kiln.sysusers')], { encoding: 'utf8' });
  t.equal(u.status, 0, u.stderr);
  const passwd = readFileSync(join(root, 'etc/passwd'), 'utf8');
  const group = readFileSync(join(root, 'etc/group'), 'utf8');
  t.match(passwd, /^kiln:x:\d+:\d+:kiln boot agent:\/var\/lib\/kiln:\/usr\/sbin\/nologin$/m);
  for (const g of ['libvirt', 'disk', 'kvm']) t.match(group, new RegExp(`^${g}:x:\\d+:(.*,)?kiln(,.*)?$`, 'm'), `kiln is in ${g}`);
  const f = spawnSync('systemd-tmpfiles', [`--root=${root}`, '--create', join(repo, 'systemd/kiln.tmpfiles')], { encoding: 'utf8' });
  t.equal(f.status, 0, f.stderr);
  t.equal(statSync(join(root, 'var/lib/kiln')).mode & 0o777, 0o700);
  t.equal(statSync(join(root, 'run/kiln')).mode & 0o777, 0o750);
});

t.test('kilnd sends READY=1 and STATUS= on NOTIFY_SOCKET once the socket is open', async (t) => {
  const dir = tmp(t, 'kiln-notify-');
  const notify = join(dir, 'notify.sock');
  // A datagram receiver (Node has none for unix datagrams): prints each message as one JSON line.
  const receiver = spawn('python3', ['-u', '-c', `
import socket, sys, json
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    print(json.dumps(s.recv(4096).decode()), flush=True)
`, notify], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => receiver.kill('SIGKILL'));
  const lines: string[] = [];
  let buffered = '';
  receiver.stdout.on('data', (d: Buffer) => {
    buffered += d.toString();
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      lines.push(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
    }
  });
  const until = async (pred: () => boolean, ms: number, what: string) => {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await until(() => lines.includes('bound'), 5000, 'the receiver');
  const sock = join(dir, 'kiln.sock');
  const kilnd = spawn(process.execPath, [join(repo, 'build/agent/main.js'), '--state-dir', join(dir, 'state'), '--socket', sock, '--libvirt-uri', 'test:///default', '--log-level', 'warn'], {
    env: { ...process.env, NOTIFY_SOCKET: notify, WATCHDOG_USEC: '400000', WATCHDOG_PID: '' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  t.teardown(() => kilnd.kill('SIGKILL'));
  await until(() => lines.some((l) => l.includes('READY=1')), 30_000, 'READY=1');
  const ready = JSON.parse(lines.find((l) => l.includes('READY=1'))!) as string;
  t.match(ready, /STATUS=serving on /);
  t.match(ready, new RegExp(`MAINPID=${kilnd.pid}`));
  t.ok(existsSync(sock), 'the API socket exists when READY=1 arrives');
  await until(() => lines.some((l) => l.includes('WATCHDOG=1')), 5000, 'WATCHDOG=1');
  kilnd.kill('SIGTERM');
  await until(() => lines.some((l) => l.includes('STOPPING=1')), 10_000, 'STOPPING=1');
  const code = await new Promise<number | null>((r) => (kilnd.exitCode !== null ? r(kilnd.exitCode) : kilnd.once('exit', (c) => r(c))));
  t.equal(code, 0, 'kilnd exits 0 on SIGTERM');
});
