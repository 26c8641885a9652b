// Test fixture: a real OpenSSH sshd on 127.0.0.1 and a random port, with its own host key,
// sshd_config and authorized_keys in a temp dir. Sessions get PATH=<dir>/bin first, so a test
// puts a `cloud-init` script there to play the guest's cloud-init.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Sshd {
  dir: string;
  port: number;
  /** "ssh-ed25519 BASE64" of the server's host key. */
  hostKey: string;
  /** Writes <dir>/bin/<name> (mode 0755) with the given shell script body. */
  script(name: string, body: string): void;
  removeScript(name: string): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  log(): string;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Prepares (does not start) an sshd trusting `authorizedKeys` for root. */
export async function makeSshd(authorizedKeys: string[]): Promise<Sshd> {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-sshd-'));
  const port = await freePort();
  const keyPath = join(dir, 'ssh_host_ed25519_key');
  const kg = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test-host', '-f', keyPath]);
  if (kg.status !== 0) throw new Error(`ssh-keygen failed: ${kg.stderr}`);
  const hostKey = readFileSync(`${keyPath}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
  mkdirSync(join(dir, 'bin'));
  writeFileSync(join(dir, 'authorized_keys'), authorizedKeys.join('\n') + '\n', { mode: 0o600 });
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${keyPath}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'StrictModes no',
      'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'LogLevel VERBOSE',
      `SetEnv PATH=${join(dir, 'bin')}:/usr/sbin:/usr/bin:/sbin:/bin`,
      '',
    ].join('\n'),
  );
  // sshd refuses to start without its privilege separation folder.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });

  let proc: ChildProcess | undefined;
  let output = '';
  const sshd: Sshd = {
    dir,
    port,
    hostKey,
    script(name, body) {
      writeFileSync(join(dir, 'bin', name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    },
    removeScript(name) {
      rmSync(join(dir, 'bin', name), { force: true });
    },
    async start() {
      proc = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'pipe', 'pipe'] });
      proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
      proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      const until = Date.now() + 10_000;
      while (Date.now() < until) {
        if (proc.exitCode !== null) throw new Error(`sshd exited: ${output}`);
        if (await canConnect(port)) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`sshd did not listen on ${port}: ${output}`);
    },
    async stop() {
      const p = proc;
      proc = undefined;
      if (!p || p.exitCode !== null) return;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await exited;
    },
    log: () => output,
  };
  return sshd;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
