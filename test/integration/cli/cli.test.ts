// The built `kiln` binary against a real kilnd (test:///default): human tables, --json documents,
// the exit-code table, --help with examples on every command, bash completion, a progress bar on
// a terminal, and --host ssh:// through a real sshd on loopback (known_hosts checked).
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { ERROR_CODES } from '../../../agent/errors.js';
import { KILN, startImageServer, startKilnd, tempDir } from '../api/harness.js';
import { runKiln } from '../../fixtures/kilnd.js';

const kilnd = await startKilnd(t);
const images = await startImageServer(t);
const base = images.qcow2('base.qcow2', '64M');
const work = tempDir(t, 'kiln-cli-');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}
const kiln = (args: string[], env: Record<string, string | undefined> = {}): Promise<Run> => runKiln(args, { KILN_SOCKET_PATH: kilnd.socket, ...env });
const exit = (code: keyof typeof ERROR_CODES) => ERROR_CODES[code].exit;
const createArgs = (name: string, ...extra: string[]) => ['instance', 'create', name, '--image', base.url, '--checksum', base.checksum, '--memory', '128M', ...extra];

t.test('status: table and --json', async (t) => {
  const human = await kiln(['status']);
  t.equal(human.code, 0);
  t.match(human.stdout, /^libvirt: +test:\/\/\/default \(connected\)$/m);
  const json = await kiln(['--json', 'status']);
  t.equal(JSON.parse(json.stdout).libvirt.connected, true);
});

t.test('instance create, ls, show, stop, start, rm', async (t) => {
  const keyFile = join(work, 'id.pub');
  writeFileSync(keyFile, 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefghij op@desk\n');
  const userData = join(work, 'user-data');
  writeFileSync(userData, '#cloud-config\nruncmd: [echo hi]\n');
  const c = await kiln([...createArgs('cli-1', '--vcpus', '2', '--ssh-key', keyFile, '--user-data', userData, '--disk-size', '1G')]);
  t.equal(c.code, 0, c.stderr);
  t.match(c.stdout, /^name: +cli-1$/m);
  t.match(c.stdout, /^state: +running$/m);
  t.match(c.stdout, /^memory: +128 MiB$/m);
  t.match(c.stdout, /^disk: +\S+\/cli-1\/disk\.qcow2 \(overlay, qcow2, 1\.0 GiB\)$/m);
  t.equal(c.stderr, '', 'no progress bar when stderr is not a terminal');

  const again = await kiln(['--json', ...createArgs('cli-1', '--vcpus', '2', '--ssh-key', keyFile, '--user-data', userData, '--disk-size', '1G')]);
  t.equal(again.code, 0, 'the same spec again succeeds');
  const doc = JSON.parse(again.stdout);
  t.equal(doc.name, 'cli-1');
  t.equal(doc.vcpus, 2);
  t.equal(doc.disk.virtualSize, 1 << 30);
  t.equal(doc.image.digest, `sha256:${base.sha256}`);

  const ls = await kiln(['instance', 'ls']);
  t.equal(ls.code, 0);
  const [header, row] = ls.stdout.trim().split('\n');
  t.match(header, /^NAME +STATE +READY +IMAGE +MEMORY +VCPUS +SSH$/);
  t.match(row, /^cli-1 +running +yes +sha256:[0-9a-f]{12} +128 MiB +2 +127\.0\.0\.1:\d+$/);
  t.equal((await kiln(['instance', 'ls', '-q'])).stdout, 'cli-1\n');
  t.same(JSON.parse((await kiln(['--json', 'instance', 'ls'])).stdout).map((i: { name: string }) => i.name), ['cli-1']);
  t.match((await kiln(['instance', 'show', 'cli-1'])).stdout, /^ssh: +127\.0\.0\.1:\d+$/m);

  t.equal((await kiln(['instance', 'stop', '--force', 'cli-1'])).stdout, 'cli-1: shutoff\n');
  t.equal((await kiln(['instance', 'start', 'cli-1'])).stdout, 'cli-1: running\n');
  t.equal(JSON.parse((await kiln(['--json', 'instance', 'stop', 'cli-1'])).stdout).state, 'shutoff');
  const rm = await kiln(['instance', 'rm', 'cli-1']);
  t.equal(rm.stdout, 'removed cli-1\n');
  t.equal((await kiln(['instance', 'ls'])).stdout, 'no instances\n');
});

t.test('exit codes and error documents', async (t) => {
  const nf = await kiln(['instance', 'show', 'ghost']);
  t.equal(nf.code, exit('KILN_NOT_FOUND'));
  t.equal(nf.stderr, 'kiln: no instance named ghost [KILN_NOT_FOUND]\n');
  t.equal(nf.stdout, '');
  const nfJson = await kiln(['--json', 'instance', 'rm', 'ghost']);
  t.equal(nfJson.code, exit('KILN_NOT_FOUND'));
  t.equal(JSON.parse(nfJson.stdout).error.code, 'KILN_NOT_FOUND');

  t.equal((await kiln(createArgs('keep'))).code, 0);
  const conflict = await kiln(['--json', ...createArgs('keep', '--vcpus', '4')]);
  t.equal(conflict.code, exit('KILN_CONFLICT'));
  t.same(JSON.parse(conflict.stdout).error.details.fields, ['vcpus']);
  t.equal((await kiln(['instance', 'rm', 'keep'])).code, 0);

  const small = images.qcow2('small.qcow2', '16M');
  const checks: Array<[string[], keyof typeof ERROR_CODES]> = [
    [createArgs('x', '--memory', 'lots'), 'KILN_BAD_REQUEST'],
    [createArgs('x', '--user-data', join(work, 'missing.yaml')), 'KILN_BAD_REQUEST'],
    [createArgs('Bad_Name'), 'KILN_BAD_REQUEST'],
    [['instance', 'frobnicate'], 'KILN_BAD_REQUEST'],
    [['instance', 'create', 'x'], 'KILN_BAD_REQUEST'],
    [['instance', 'create', 'x', '--image', base.url, '--checksum', `sha256:${'2'.repeat(64)}`], 'KILN_CHECKSUM_MISMATCH'],
    [['instance', 'create', 'x', '--image', `${images.base}/none.qcow2`, '--checksum', `sha256:${'3'.repeat(64)}`], 'KILN_FETCH_FAILED'],
    // min_ram sticks to the cached image: an image of its own.
    [['instance', 'create', 'x', '--image', small.url, '--checksum', small.checksum, '--memory', '128M', '--min-ram', '1G'], 'KILN_MEMORY_TOO_SMALL'],
    [['--socket', join(work, 'nothing.sock'), 'instance', 'ls'], 'KILN_UNAVAILABLE'],
  ];
  for (const [args, code] of checks) {
    const r = await kiln(['--json', ...args]);
    t.equal(r.code, exit(code), `${args.join(' ')} -> ${code}`);
    t.equal(JSON.parse(r.stdout).error.code, code, 'the --json document names the code');
  }
});

t.test('--help with examples on every command', async (t) => {
  const script = (await kiln(['completion', 'bash'])).stdout;
  // Leaf commands (the ones that run): their entry in _kiln_subs is empty.
  const subsBlock = script.slice(script.indexOf('_kiln_subs=('), script.indexOf('_kiln_opts=('));
  const paths = [...subsBlock.matchAll(/^ {2}\['([^']+)'\]=''$/gm)].map((m) => m[1]!);
  t.ok(paths.includes('instance create') && paths.includes('completion') && paths.includes('status'), 'the tree lists the commands');
  const aliases = new Set(['instance list', 'instance inspect', 'instance remove']);
  for (const p of paths.filter((p) => !aliases.has(p))) {
    const r = await kiln([...p.split(' '), '--help']);
    t.equal(r.code, 0, `${p} --help exits 0`);
    t.match(r.stdout, /Examples:\n {2}kiln /, `${p} --help has examples`);
  }
  const top = await kiln(['--help']);
  for (const [code, spec] of Object.entries(ERROR_CODES)) t.match(top.stdout, new RegExp(`^ +${spec.exit} +${code}$`, 'm'), `exit table lists ${code}`);
});

t.test('bash completion completes commands, options and instance names', async (t) => {
  t.equal((await kiln(createArgs('comp-a'))).code, 0);
  const bin = join(work, 'bin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, 'kiln'), `#!/bin/sh\nexec ${process.execPath} ${KILN} "$@"\n`);
  chmodSync(join(bin, 'kiln'), 0o755);
  const scriptFile = join(work, 'kiln.bash');
  writeFileSync(scriptFile, (await kiln(['completion', 'bash'])).stdout);
  const complete = (line: string) => {
    const r = spawnSync('bash', ['-c', `source ${scriptFile}; COMP_WORDS=(${line}); COMP_CWORD=$((\${#COMP_WORDS[@]}-1)); _kiln; printf '%s\\n' "\${COMPREPLY[@]}"`], {
      encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, KILN_SOCKET_PATH: kilnd.socket },
    });
    return r.stdout.trim().split('\n').filter(Boolean).sort();
  };
  const top = complete("kiln ''");
  for (const c of ['completion', 'instance', 'status']) t.ok(top.includes(c), `top level offers ${c}`);
  t.notOk(top.includes('create'), 'subcommands are not offered at the top');
  t.same(complete('kiln instance st'), ['start', 'stop']);
  t.ok(complete('kiln instance create web --me').includes('--memory'));
  t.same(complete("kiln instance rm ''"), ['comp-a'], 'instance names from kiln instance ls -q');
  t.same(complete('kiln --json instance show comp'), ['comp-a']);
  const fish = await kiln(['completion', 'fish']);
  t.match(fish.stdout, /complete -c kiln -n '__fish_use_subcommand' -a instance/);
  t.equal((await kiln(['instance', 'rm', 'comp-a'])).code, 0);
});

t.test('a progress bar on a terminal', async (t) => {
  // script(1) gives the CLI a pseudo-terminal, as an operator's shell would.
  const cmd = `${process.execPath} ${KILN} --socket ${kilnd.socket} instance create tty-1 --image ${base.url} --checksum ${base.checksum} --memory 128M`;
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', env: { ...process.env, COLUMNS: '100' } });
  t.equal(r.status, 0, r.stdout);
  for (const step of ['image', 'disk', 'seed', 'define', 'start', 'wait']) t.match(r.stdout, new RegExp(`\\r\\x1b\\[2K${step}`), `progress line for ${step}`);
  t.match(r.stdout, /^name: +tty-1/m);
  t.equal((await kiln(['instance', 'rm', 'tty-1'])).code, 0);
});

// ------------------------------------------------------------------ --host through a real sshd

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

t.test('--host ssh:// reaches kilnd through a real sshd on loopback', async (t) => {
  const dir = tempDir(t, 'kiln-sshd-');
  const home = join(dir, 'home');
  mkdirSync(join(home, '.ssh'), { recursive: true, mode: 0o700 });
  const keygen = (file: string) => t.equal(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file]).status, 0);
  keygen(join(dir, 'host_key'));
  keygen(join(home, '.ssh', 'id_ed25519'));
  keygen(join(dir, 'other_host_key'));
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(home, '.ssh', 'id_ed25519.pub')));
  const port = await freePort();
  writeFileSync(join(dir, 'sshd_config'), [
    `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${join(dir, 'host_key')}`, `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`, 'StrictModes no', 'UsePAM no', 'PasswordAuthentication no',
    'KbdInteractiveAuthentication no', 'PermitRootLogin prohibit-password', 'AllowStreamLocalForwarding yes', '',
  ].join('\n'));
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const sshd = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let sshdLog = '';
  sshd.stderr.on('data', (d: Buffer) => (sshdLog += d));
  t.teardown(() => sshd.kill('SIGTERM'));
  for (let i = 0; i < 100 && !sshdLog.includes('Server listening'); i++) await new Promise((r) => setTimeout(r, 50));
  t.match(sshdLog, /Server listening/, 'sshd is up');

  const hostPub = readFileSync(join(dir, 'host_key.pub'), 'utf8').split(' ').slice(0, 2).join(' ');
  const knownHosts = join(home, '.ssh', 'known_hosts');
  const env = { HOME: home, SSH_AUTH_SOCK: undefined, KILN_SOCKET_PATH: undefined };
  const url = `ssh://root@127.0.0.1:${port}`;
  const remote = (...args: string[]) => kiln(['--host', url, '--socket', kilnd.socket, ...args], env);

  // Unknown host key: refused.
  writeFileSync(knownHosts, '');
  const unknown = await remote('--json', 'status');
  t.equal(unknown.code, exit('KILN_UNAVAILABLE'), 'an unknown host key is refused');
  t.match(JSON.parse(unknown.stdout).error.message, /not in known_hosts/);

  // A different key on record for this host: refused as a possible man-in-the-middle.
  const otherPub = readFileSync(join(dir, 'other_host_key.pub'), 'utf8').split(' ').slice(0, 2).join(' ');
  writeFileSync(knownHosts, `[127.0.0.1]:${port} ${otherPub}\n`);
  const mismatch = await remote('--json', 'status');
  t.equal(mismatch.code, exit('KILN_UNAVAILABLE'));
  t.match(JSON.parse(mismatch.stdout).error.message, /different from known_hosts/);

  // The right key (hashed, as ssh-keygen -H writes it): works, for reads and a full create.
  writeFileSync(knownHosts, `[127.0.0.1]:${port} ${hostPub}\n`);
  t.equal(spawnSync('ssh-keygen', ['-H', '-f', knownHosts]).status, 0);
  t.match(readFileSync(knownHosts, 'utf8'), /^\|1\|/, 'known_hosts is hashed');
  const status = await remote('--json', 'status');
  t.equal(status.code, 0, status.stderr + status.stdout);
  t.equal(JSON.parse(status.stdout).socket, kilnd.socket, 'the remote kilnd answered');
  const created = await remote('--json', ...createArgs('over-ssh'));
  t.equal(created.code, 0, created.stderr + created.stdout);
  t.equal(JSON.parse(created.stdout).state, 'running', 'provisioned through the SSH forward (NDJSON stream)');
  const ls = await remote('instance', 'ls', '-q');
  t.equal(ls.stdout, 'over-ssh\n');
  const nf = await remote('--json', 'instance', 'show', 'ghost');
  t.equal(nf.code, exit('KILN_NOT_FOUND'), 'errors keep their codes over SSH');
  t.equal((await remote('instance', 'rm', 'over-ssh')).code, 0);

  // A wrong remote socket path: the forward is refused.
  const badSock = await kiln(['--host', url, '--socket', '/run/nothing/here.sock', '--json', 'status'], env);
  t.equal(badSock.code, exit('KILN_UNAVAILABLE'));
  // No key at all: refused before connecting.
  const nokey = await kiln(['--host', url, '--json', 'status'], { HOME: join(dir, 'empty-home'), SSH_AUTH_SOCK: undefined });
  t.equal(nokey.code, exit('KILN_UNAVAILABLE'));
  t.match(JSON.parse(nokey.stdout).error.message, /no SSH agent/);
});
