// Owns: spawning external programs. The only importer of child_process in kiln.
// Guarantees: argv arrays (never a shell), LC_ALL=C, a timeout that kills the whole process,
// optional resource limits through prlimit and low priority through nice, capped captured output,
// and typed KilnErrors carrying the stderr tail.
// Must not: know any program's argv; each program has its own wrapper in tools/ that builds it
// and converts KILN_TOOL_FAILED into its own code (e.g. KILN_QEMU_IMG).
import { spawn } from 'node:child_process';
import { KilnError } from '../errors.js';

export interface ResourceLimits {
  /** RLIMIT_AS in bytes. */
  addressSpaceBytes?: number;
  /** RLIMIT_CPU in seconds. */
  cpuSeconds?: number;
}

export interface RunOptions {
  /** Kill the program after this many milliseconds (KILN_TIMEOUT). Required: nothing runs forever. */
  timeoutMs: number;
  limits?: ResourceLimits;
  /** Run under `nice -n N` (converts and copies run at low CPU priority). */
  niceness?: number;
  /** Captured stdout/stderr are truncated beyond this many bytes each (default 4 MiB). */
  maxOutputBytes?: number;
  /** Extra environment; LC_ALL=C is always forced. The parent environment is inherited. */
  env?: Record<string, string>;
  cwd?: string;
  /** Bytes written to stdin, which is then closed. */
  input?: string | Buffer;
  /** Exit statuses that are not failures (default [0]). */
  okExitCodes?: number[];
  signal?: AbortSignal;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  durationMs: number;
}

/** The interface wrappers depend on, so unit tests can pass a fake runner. */
export type Runner = (program: string, args: readonly string[], options: RunOptions) => Promise<RunResult>;

const DEFAULT_MAX_OUTPUT = 4 * 1024 * 1024;
const STDERR_TAIL_BYTES = 2048;

export function tail(text: string, bytes = STDERR_TAIL_BYTES): string {
  return text.length <= bytes ? text.trim() : '…' + text.slice(-bytes).trim();
}

/** Builds the argv actually executed: [nice -n N] [prlimit --as= --cpu= --] program args. */
export function wrapArgv(program: string, args: readonly string[], options: Pick<RunOptions, 'limits' | 'niceness'>): string[] {
  const argv: string[] = [];
  if (options.niceness !== undefined) argv.push('nice', '-n', String(options.niceness));
  const limits = options.limits;
  if (limits && (limits.addressSpaceBytes !== undefined || limits.cpuSeconds !== undefined)) {
    argv.push('prlimit');
    if (limits.addressSpaceBytes !== undefined) argv.push(`--as=${Math.floor(limits.addressSpaceBytes)}`);
    if (limits.cpuSeconds !== undefined) argv.push(`--cpu=${Math.floor(limits.cpuSeconds)}`);
    argv.push('--');
  }
  argv.push(program, ...args);
  return argv;
}

class CappedBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  truncated = false;
  constructor(private readonly cap: number) {}
  push(chunk: Buffer): void {
    if (this.size >= this.cap) {
      this.truncated = true;
      return;
    }
    const room = this.cap - this.size;
    const kept = chunk.length > room ? chunk.subarray(0, room) : chunk;
    if (kept.length < chunk.length) this.truncated = true;
    this.chunks.push(kept);
    this.size += kept.length;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

export const run: Runner = (program, args, options) => {
  const argv = wrapArgv(program, args, options);
  const cap = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
  const started = Date.now();
  return new Promise<RunResult>((resolve, reject) => {
    let settled = false;
    const stdout = new CappedBuffer(cap);
    const stderr = new CappedBuffer(cap);
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd: options.cwd,
      env: { ...process.env, ...options.env, LC_ALL: 'C', LANG: 'C' },
      stdio: ['pipe', 'pipe', 'pipe'],
      // Own process group, so the timeout kills prlimit/nice and the program together.
      detached: true,
    });
    const killGroup = (sig: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, sig);
      } catch {
        child.kill(sig);
      }
    };
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup('SIGKILL');
    }, options.timeoutMs);
    const onAbort = () => killGroup('SIGKILL');
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      fn();
    };
    child.stdout.on('data', (c: Buffer) => stdout.push(c));
    child.stderr.on('data', (c: Buffer) => stderr.push(c));
    child.stdin.on('error', () => {
      /* the program may exit without reading stdin; its exit status tells the story */
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      finish(() =>
        reject(
          err.code === 'ENOENT'
            ? new KilnError('KILN_TOOL_MISSING', `${argv[0]} is not installed (needed to run ${program})`, { program: argv[0] })
            : new KilnError('KILN_TOOL_FAILED', `could not start ${program}: ${err.message}`, { program, errno: err.code }),
        ),
      );
    });
    child.on('close', (code, sig) => {
      finish(() => {
        const durationMs = Date.now() - started;
        const out = stdout.text();
        const err = stderr.text();
        if (timedOut) {
          reject(new KilnError('KILN_TIMEOUT', `${program} did not finish within ${options.timeoutMs} ms`, {
            program, timeoutMs: options.timeoutMs, stderrTail: tail(err),
          }));
          return;
        }
        if (options.signal?.aborted) {
          reject(new KilnError('KILN_TOOL_FAILED', `${program} was cancelled`, { program, cancelled: true }));
          return;
        }
        // prlimit exits 127 (or with its own message) when the program itself is missing.
        if (code === 127 && /No such file or directory|failed to execute/.test(err)) {
          reject(new KilnError('KILN_TOOL_MISSING', `${program} is not installed`, { program, stderrTail: tail(err) }));
          return;
        }
        const exitCode = code ?? 128;
        if (!(options.okExitCodes ?? [0]).includes(exitCode) || sig) {
          reject(new KilnError('KILN_TOOL_FAILED', `${program} ${sig ? `was killed by ${sig}` : `exited with status ${exitCode}`}${err.trim() ? `: ${tail(err, 300)}` : ''}`, {
            program, exitCode: code, signal: sig, stderrTail: tail(err), limits: options.limits ?? null,
          }));
          return;
        }
        resolve({ stdout: out, stderr: err, exitCode, durationMs });
      });
    });
    if (options.input !== undefined) child.stdin.end(options.input);
    else child.stdin.end();
  });
};
