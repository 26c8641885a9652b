// Owns: how the CLI prints: one JSON document with --json, human tables otherwise, errors as
// {"error":{...}} (or a readable line) with the registry's exit code, and progress bars on a TTY.
// Must not: talk to the daemon.
import { ERROR_CODES, toKilnError } from '../errors.js';
import { formatSize } from '../config/units.js';

export interface OutputOptions {
  json: boolean;
  stdout?: NodeJS.WriteStream | NodeJS.WritableStream;
  stderr?: NodeJS.WriteStream | NodeJS.WritableStream;
}

export class Output {
  readonly json: boolean;
  private readonly out: NodeJS.WritableStream;
  private readonly err: NodeJS.WritableStream;
  constructor(options: OutputOptions) {
    this.json = options.json;
    this.out = options.stdout ?? process.stdout;
    this.err = options.stderr ?? process.stderr;
  }

  /** Prints the result: the JSON document, or the human rendering. */
  result(value: unknown, human: (value: any) => string): void {
    this.out.write(this.json ? JSON.stringify(value, null, 2) + '\n' : human(value).replace(/\n?$/, '\n'));
  }

  /** Prints an error in the chosen style and returns the exit code. */
  error(error: unknown): number {
    const err = toKilnError(error);
    if (this.json) {
      this.out.write(JSON.stringify({ error: { code: err.code, message: err.message, details: err.details } }) + '\n');
    } else {
      this.err.write(`kiln: ${err.message} [${err.code}]\n`);
      const reasons = err.details.reasons;
      if (Array.isArray(reasons)) for (const r of reasons) this.err.write(`  - ${String(r)}\n`);
    }
    return ERROR_CODES[err.code].exit;
  }

  /** A progress callback: a bar on a terminal stderr, nothing otherwise (or with --json). */
  progress(): ((e: { step: string; done?: number; total?: number; rate?: number; message?: string }) => void) | undefined {
    const tty = (this.err as NodeJS.WriteStream).isTTY;
    if (this.json || !tty) return undefined;
    let lastStep = '';
    return (e) => {
      const stream = this.err as NodeJS.WriteStream;
      if (lastStep && e.step !== lastStep) stream.write('\n');
      lastStep = e.step;
      const width = Math.max(10, Math.min(40, (stream.columns ?? 80) - 50));
      let line = `${e.step}`;
      if (e.total && e.done !== undefined) {
        const frac = Math.min(1, e.done / e.total);
        const filled = Math.round(frac * width);
        line += ` [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(0)}% ${formatSize(e.done)}/${formatSize(e.total)}`;
      } else if (e.done !== undefined) line += ` ${formatSize(e.done)}`;
      if (e.rate) line += ` ${formatSize(e.rate)}/s`;
      if (e.message) line += ` ${e.message}`;
      stream.write(`\r\x1b[2K${line}`);
    };
  }
}

/** Renders rows as an aligned text table. */
export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

export function keyValues(pairs: Array<[string, unknown]>): string {
  const width = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${(k + ':').padEnd(width + 1)} ${v === undefined || v === null ? '-' : String(v)}`).join('\n');
}
