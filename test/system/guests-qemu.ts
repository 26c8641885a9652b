// Test fixture for the guests system tests: builds (or finds cached) the test images with
// scripts/images/*, and boots them with plain qemu-system-x86_64 under TCG (KVM does not work in
// this container), the serial console in a file, a QMP socket for ACPI power-down, and optionally
// user-mode networking with the guest's port 22 forwarded to a loopback port.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Runs scripts/images/<script> (cached: instant; otherwise it builds) and returns the path it prints. */
export function imagePath(script: 'build-tiny-guest' | 'build-cloud-image', args: string[] = []): string {
  const out = execFileSync(join(ROOT, 'scripts/images', script), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 30 * 60_000 });
  const path = out.trim().split('\n').pop() ?? '';
  if (!existsSync(path)) throw new Error(`${script} printed ${JSON.stringify(out)}, not an existing file`);
  return path;
}

export interface BootOptions {
  dir: string;
  disk: { path: string; format: 'qcow2' | 'raw' };
  seed?: { path: string; as: 'sata-cdrom' | 'virtio-disk' };
  memoryMiB?: number;
  cpus?: number;
  /** Forward 127.0.0.1:<sshPort> to the guest's port 22 (user-mode networking). */
  sshPort?: number;
}

export interface QemuGuest {
  proc: ChildProcess;
  consolePath: string;
  console(): string;
  /** Resolves with the console text once `re` matches it; rejects on timeout or qemu exit. */
  waitForConsole(re: RegExp, timeoutMs: number): Promise<string>;
  /** qemu's exit status (resolves when the guest powers off: -no-reboot). */
  exited: Promise<number | null>;
  /** ACPI power button through QMP. */
  powerdown(): Promise<void>;
  kill(): Promise<void>;
  stderr(): string;
}

export function bootQemu(o: BootOptions): QemuGuest {
  const consolePath = join(o.dir, 'console.log');
  const qmpPath = join(o.dir, 'qmp.sock');
  const args = [
    '-machine', 'q35', '-accel', 'tcg',
    '-m', String(o.memoryMiB ?? 256), '-smp', String(o.cpus ?? 1),
    '-display', 'none', '-nodefaults', '-no-reboot',
    '-serial', `file:${consolePath}`,
    '-qmp', `unix:${qmpPath},server=on,wait=off`,
    // The root disk as libvirt attaches it on q35: virtio-blk.
    '-drive', `file=${o.disk.path},if=none,id=root,format=${o.disk.format}`,
    '-device', 'virtio-blk-pci,drive=root,bootindex=0',
  ];
  if (o.seed?.as === 'sata-cdrom') {
    args.push('-drive', `file=${o.seed.path},if=none,id=seed,media=cdrom,format=raw,readonly=on`, '-device', 'ide-cd,drive=seed,bus=ide.1');
  } else if (o.seed?.as === 'virtio-disk') {
    args.push('-drive', `file=${o.seed.path},if=none,id=seed,format=raw,readonly=on`, '-device', 'virtio-blk-pci,drive=seed');
  }
  if (o.sshPort !== undefined) {
    args.push('-netdev', `user,id=n0,hostfwd=tcp:127.0.0.1:${o.sshPort}-:22`, '-device', 'virtio-net-pci,netdev=n0');
  } else {
    args.push('-nic', 'none');
  }
  const proc = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  let done = false;
  void exited.then(() => (done = true));
  const consoleText = () => {
    try {
      return readFileSync(consolePath, 'utf8');
    } catch {
      return '';
    }
  };
  return {
    proc,
    consolePath,
    console: consoleText,
    stderr: () => stderr,
    exited,
    async waitForConsole(re, timeoutMs) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const text = consoleText();
        if (re.test(text)) return text;
        if (done) throw new Error(`qemu exited before ${re} appeared; console:\n${text.slice(-3000)}\nstderr: ${stderr}`);
        if (Date.now() > until) throw new Error(`${re} did not appear within ${timeoutMs} ms; console:\n${text.slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    },
    async powerdown() {
      await qmp(qmpPath, ['{"execute":"qmp_capabilities"}', '{"execute":"system_powerdown"}']);
    },
    async kill() {
      if (done) return;
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

/** Sends QMP commands one per line and waits for as many `return` answers. */
function qmp(path: string, commands: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let buf = '';
    let sent = 0;
    let answered = 0;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`QMP did not answer: ${buf}`));
    }, 10_000);
    s.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const line of lines) {
        if (line.includes('"QMP"') && sent === 0) {
          s.write(commands[sent++] + '\n');
        } else if (line.includes('"return"')) {
          answered++;
          if (answered === commands.length) {
            clearTimeout(timer);
            s.end();
            resolve();
          } else {
            s.write(commands[sent++] + '\n');
          }
        } else if (line.includes('"error"')) {
          clearTimeout(timer);
          s.destroy();
          reject(new Error(`QMP error: ${line}`));
        }
      }
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
