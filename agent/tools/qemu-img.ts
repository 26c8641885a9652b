// Owns: the one place in kiln that builds qemu-img argv (info, check, create, convert, resize,
// measure, compare) and turns its answers into typed values.
// Guarantees, on every call: an explicit format (`-f`; the types and a runtime check make a call
// without one impossible, so qemu-img never probes), absolute paths (a relative name such as
// `json:{...}` or `nbd:...` would be read by qemu-img as a protocol), `--output=json` where the
// subcommand has it, `--force-share` for inspections, LC_ALL=C (run.ts), a timeout, prlimit
// (address space, CPU seconds) for inspections, and low CPU priority (nice) for converts and
// compares. Failures become KILN_QEMU_IMG (details: subcommand, exitCode, stderrTail);
// KILN_TIMEOUT and KILN_TOOL_MISSING pass through.
// Must not: decide whether an image is safe (images/safety.ts does, with formats/ first), or
// spawn anything itself (run.ts does).
import { isAbsolute, resolve } from 'node:path';
import { KilnError, isKilnError } from '../errors.js';
import type { KilnConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { run as defaultRun, type Runner, type RunOptions } from './run.js';

export type QemuFormat = 'raw' | 'qcow2' | 'vmdk' | 'vpc' | 'vhdx' | 'vdi' | 'luks' | 'qed';
export const QEMU_FORMATS: readonly QemuFormat[] = Object.freeze(['raw', 'qcow2', 'vmdk', 'vpc', 'vhdx', 'vdi', 'luks', 'qed']);

export interface QemuImgInfo {
  format: string;
  virtualSize: number;
  actualSize: number;
  clusterSize?: number;
  backingFilename?: string;
  backingFormat?: string;
  dataFile?: string;
  fullBackingFilename?: string;
  dirty?: boolean;
  raw: unknown;
}

export interface QemuImgLimits {
  addressSpaceBytes: number;
  cpuSeconds: number;
  inspectTimeoutMs: number;
  convertTimeoutMs: number;
}

export interface CreateOptions {
  format: 'qcow2' | 'raw';
  size?: number;
  backing?: { path: string; format: QemuFormat };
  clusterSize?: number;
}

export interface ConvertOptions {
  src: string;
  srcFormat: QemuFormat;
  dst: string;
  /** Disks use qcow2 or raw; the other formats exist for building test corpora. */
  dstFormat: ConvertTarget;
  /** -n: write into an existing target (a block device, a pre-created file). */
  noCreate?: boolean;
  /** --target-is-zero: the target reads as zeros already; needs noCreate. */
  targetIsZero?: boolean;
  cache?: 'none' | 'writeback';
  /** -W: out-of-order writes, faster on devices. */
  parallel?: boolean;
  /** false: allocate every block (-S 0); true or unset: qemu-img's default sparse detection. */
  sparse?: boolean;
  /** -c: compressed clusters (qcow2, vmdk streamOptimized). */
  compress?: boolean;
  /** -o key=value,...: target creation options (compat, subformat, compression_type ...). */
  targetOptions?: Record<string, string | number>;
}

/** Formats qemu-img can write without secrets. */
export type ConvertTarget = Exclude<QemuFormat, 'luks'>;

/** The program name; the one literal 'qemu-img' in kiln outside tests. */
const PROGRAM = 'qemu-img';
/** Converts and compares run at this nice level so guests and the API keep the CPU. */
const CONVERT_NICENESS = 10;
/** qemu-img's JSON answers are small; anything bigger is a hostile or broken answer. */
const MAX_JSON_BYTES = 1024 * 1024;

function assertFormat(format: unknown, what: string): asserts format is QemuFormat {
  if (typeof format !== 'string' || !(QEMU_FORMATS as readonly string[]).includes(format)) {
    throw new KilnError('KILN_BAD_REQUEST', `${what}: "${String(format)}" is not a qemu-img format kiln uses (${QEMU_FORMATS.join(', ')})`, { format, allowed: QEMU_FORMATS });
  }
}

/**
 * Absolute, normalised path. An absolute path cannot be read by qemu-img as a protocol
 * (`json:`, `nbd:`, `http:` all need the prefix at the very start), nor as an option (`-x`).
 */
export function safePath(path: string, what = 'path'): string {
  if (typeof path !== 'string' || path === '' || path.includes('\0')) {
    throw new KilnError('KILN_BAD_REQUEST', `${what} must be a non-empty path`, { path });
  }
  const abs = isAbsolute(path) ? resolve(path) : resolve(process.cwd(), path);
  // qemu-img splits -o/-b values on commas, so a comma in a path would be a second option.
  if (abs.includes(',')) {
    throw new KilnError('KILN_BAD_REQUEST', `${what} must not contain a comma (qemu-img option syntax): ${abs}`, { path: abs });
  }
  return abs;
}

function wholeBytes(n: unknown, what: string, min = 0): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min) {
    throw new KilnError('KILN_BAD_REQUEST', `${what} must be a whole number of bytes >= ${min}, got ${String(n)}`, { [what]: n });
  }
  return n;
}

/** `k=v,k=v` for -o; keys and values are restricted so nothing can smuggle in a second option. */
function optionList(options: Record<string, string | number>): string {
  return Object.entries(options).map(([k, v]) => {
    const value = String(v);
    if (!/^[a-z][a-z0-9_-]{0,40}$/.test(k) || !/^[A-Za-z0-9._/+-]{1,4096}$/.test(value)) {
      throw new KilnError('KILN_BAD_REQUEST', `qemu-img option ${k}=${value} has characters kiln does not pass`, { option: k });
    }
    return `${k}=${value}`;
  }).join(',');
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}
function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

export class QemuImg {
  private readonly runner: Runner;
  private readonly log: Logger | undefined;

  constructor(readonly limits: QemuImgLimits, runner: Runner = defaultRun, log?: Logger) {
    this.runner = runner;
    this.log = log?.child({ component: 'qemu-img' });
  }

  static fromConfig(config: KilnConfig, runner?: Runner, log?: Logger): QemuImg {
    return new QemuImg(
      {
        addressSpaceBytes: config.qemuImgAddressSpace,
        cpuSeconds: config.qemuImgCpuSeconds,
        inspectTimeoutMs: config.qemuImgTimeout,
        convertTimeoutMs: config.convertTimeout,
      },
      runner,
      log,
    );
  }

  /** Options of an inspection: hard limits, short timeout, small output. */
  private inspectOptions(): RunOptions {
    return {
      timeoutMs: this.limits.inspectTimeoutMs,
      limits: { addressSpaceBytes: this.limits.addressSpaceBytes, cpuSeconds: this.limits.cpuSeconds },
      maxOutputBytes: MAX_JSON_BYTES,
    };
  }

  /** Options of a long data copy: low priority, long timeout, no CPU-seconds cap (it would kill big copies). */
  private copyOptions(): RunOptions {
    return { timeoutMs: this.limits.convertTimeoutMs, niceness: CONVERT_NICENESS, maxOutputBytes: 64 * 1024 };
  }

  /** Runs one subcommand; the argv given here always holds -f (checked once more, defensively). */
  private async exec(subcommand: string, args: string[], options: RunOptions): Promise<{ stdout: string; exitCode: number }> {
    if (!args.includes('-f')) {
      throw new KilnError('KILN_INTERNAL', `qemu-img ${subcommand} built without -f`, { subcommand, args });
    }
    const argv = [subcommand, ...args];
    const started = Date.now();
    try {
      const res = await this.runner(PROGRAM, argv, options);
      this.log?.debug({ argv, exitCode: res.exitCode, durationMs: Date.now() - started }, 'qemu-img done');
      return { stdout: res.stdout, exitCode: res.exitCode };
    } catch (e) {
      if (isKilnError(e, 'KILN_TOOL_FAILED')) {
        const d = e.details;
        this.log?.warn({ argv, exitCode: d.exitCode, signal: d.signal, stderrTail: d.stderrTail }, 'qemu-img failed');
        // A full filesystem is the host's state, not a qemu-img failure: callers get the one code for it.
        if (/No space left on device|Disk quota exceeded/.test(String(d.stderrTail ?? ''))) {
          throw new KilnError('KILN_NO_SPACE', `qemu-img ${subcommand} ran out of space: ${e.message}`, {
            subcommand, exitCode: d.exitCode ?? null, stderrTail: d.stderrTail ?? '',
          }, { cause: e });
        }
        throw new KilnError('KILN_QEMU_IMG', `qemu-img ${subcommand} failed: ${e.message}`, {
          subcommand, exitCode: d.exitCode ?? null, signal: d.signal ?? null, stderrTail: d.stderrTail ?? '',
        }, { cause: e });
      }
      throw e;
    }
  }

  private parseJson(subcommand: string, stdout: string): Record<string, unknown> {
    let value: unknown;
    try {
      value = JSON.parse(stdout);
    } catch {
      throw new KilnError('KILN_QEMU_IMG', `qemu-img ${subcommand} did not answer JSON`, { subcommand, exitCode: 0, stderrTail: '', stdoutHead: stdout.slice(0, 200) });
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new KilnError('KILN_QEMU_IMG', `qemu-img ${subcommand} answered JSON that is not an object`, { subcommand, exitCode: 0, stderrTail: '' });
    }
    return value as Record<string, unknown>;
  }

  /** `qemu-img info -f FMT --output=json --force-share PATH` under prlimit. Never follows the backing chain. */
  async info(path: string, format: QemuFormat): Promise<QemuImgInfo> {
    assertFormat(format, 'info format');
    const file = safePath(path);
    const { stdout } = await this.exec('info', ['-f', format, '--output=json', '--force-share', file], this.inspectOptions());
    const j = this.parseJson('info', stdout);
    const virtualSize = num(j['virtual-size']);
    const fmt = str(j['format']);
    if (virtualSize === undefined || fmt === undefined) {
      throw new KilnError('KILN_QEMU_IMG', 'qemu-img info answer lacks format or virtual-size', { subcommand: 'info', exitCode: 0, stderrTail: '', answer: j });
    }
    const specific = j['format-specific'] as { data?: Record<string, unknown> } | undefined;
    const data = specific && typeof specific === 'object' && specific.data && typeof specific.data === 'object' ? specific.data : {};
    const info: QemuImgInfo = { format: fmt, virtualSize, actualSize: num(j['actual-size']) ?? 0, raw: j };
    const clusterSize = num(j['cluster-size']);
    if (clusterSize !== undefined) info.clusterSize = clusterSize;
    const backing = str(j['backing-filename']);
    if (backing !== undefined) info.backingFilename = backing;
    const fullBacking = str(j['full-backing-filename']);
    if (fullBacking !== undefined) info.fullBackingFilename = fullBacking;
    const backingFormat = str(j['backing-filename-format']);
    if (backingFormat !== undefined) info.backingFormat = backingFormat;
    const dataFile = str(data['data-file']);
    if (dataFile !== undefined) info.dataFile = dataFile;
    if (typeof j['dirty-flag'] === 'boolean') info.dirty = j['dirty-flag'];
    return info;
  }

  /** `qemu-img check`; exit 2 (corruptions) and 3 (leaks) are answers, not failures. */
  async check(path: string, format: QemuFormat): Promise<{ corruptions: number; leaks: number; raw: unknown }> {
    assertFormat(format, 'check format');
    const file = safePath(path);
    const { stdout } = await this.exec('check', ['-f', format, '--output=json', '--force-share', file], { ...this.inspectOptions(), okExitCodes: [0, 2, 3] });
    const j = this.parseJson('check', stdout);
    return { corruptions: num(j['corruptions']) ?? 0, leaks: num(j['leaks']) ?? 0, raw: j };
  }

  /** `qemu-img create -f FMT [-o cluster_size=N] [-b ABS -F FMT] PATH [SIZE]`. */
  async create(path: string, o: CreateOptions): Promise<void> {
    if (o.format !== 'qcow2' && o.format !== 'raw') assertFormat(undefined, 'create format');
    const file = safePath(path);
    const args = ['-f', o.format];
    if (o.clusterSize !== undefined) {
      if (o.format !== 'qcow2') throw new KilnError('KILN_BAD_REQUEST', 'clusterSize applies to qcow2 only', { format: o.format });
      args.push('-o', `cluster_size=${wholeBytes(o.clusterSize, 'clusterSize', 512)}`);
    }
    if (o.backing) {
      if (o.format !== 'qcow2') throw new KilnError('KILN_BAD_REQUEST', 'only qcow2 images can have a backing file', { format: o.format });
      assertFormat(o.backing.format, 'backing format');
      args.push('-b', safePath(o.backing.path, 'backing path'), '-F', o.backing.format);
    } else if (o.size === undefined) {
      throw new KilnError('KILN_BAD_REQUEST', 'create needs a size when there is no backing file', {});
    }
    args.push(file);
    if (o.size !== undefined) args.push(String(wholeBytes(o.size, 'size')));
    await this.exec('create', args, this.inspectOptions());
  }

  /** `qemu-img convert -f SRC -O DST ...` at low priority with the long timeout. */
  async convert(o: ConvertOptions): Promise<void> {
    assertFormat(o.srcFormat, 'convert source format');
    assertFormat(o.dstFormat, 'convert target format');
    if ((o.dstFormat as QemuFormat) === 'luks') assertFormat(undefined, 'convert target format (luks needs secrets)');
    if (o.targetIsZero && !o.noCreate) {
      throw new KilnError('KILN_BAD_REQUEST', 'targetIsZero needs noCreate (qemu-img --target-is-zero implies -n)', {});
    }
    const args = ['-f', o.srcFormat, '-O', o.dstFormat];
    if (o.noCreate) args.push('-n');
    if (o.targetIsZero) args.push('--target-is-zero');
    if (o.cache) args.push('-t', o.cache);
    if (o.parallel) args.push('-W');
    if (o.sparse === false) args.push('-S', '0');
    if (o.compress) args.push('-c');
    if (o.targetOptions && Object.keys(o.targetOptions).length) args.push('-o', optionList(o.targetOptions));
    args.push(safePath(o.src, 'source path'), safePath(o.dst, 'target path'));
    await this.exec('convert', args, this.copyOptions());
  }

  /** `qemu-img resize -f FMT PATH SIZE`. Never passes --shrink: qemu-img itself refuses to shrink. */
  async resize(path: string, format: QemuFormat, sizeBytes: number): Promise<void> {
    assertFormat(format, 'resize format');
    const file = safePath(path);
    await this.exec('resize', ['-f', format, file, String(wholeBytes(sizeBytes, 'sizeBytes', 1))], this.inspectOptions());
  }

  /** `qemu-img measure -f FMT -O OUT --output=json PATH`: bytes a converted copy needs. */
  async measure(path: string, format: QemuFormat, outFormat: 'qcow2' | 'raw'): Promise<{ required: number; fullyAllocated: number }> {
    assertFormat(format, 'measure format');
    if (outFormat !== 'qcow2' && outFormat !== 'raw') assertFormat(undefined, 'measure output format');
    const file = safePath(path);
    const { stdout } = await this.exec('measure', ['-f', format, '-O', outFormat, '--output=json', file], this.inspectOptions());
    const j = this.parseJson('measure', stdout);
    const required = num(j['required']);
    const fullyAllocated = num(j['fully-allocated']);
    if (required === undefined || fullyAllocated === undefined) {
      throw new KilnError('KILN_QEMU_IMG', 'qemu-img measure answer lacks required/fully-allocated', { subcommand: 'measure', exitCode: 0, stderrTail: '', answer: j });
    }
    return { required, fullyAllocated };
  }

  /** `qemu-img compare -f A -F B -U a b`: true when the guest-visible contents are equal. */
  async compare(a: string, aFormat: QemuFormat, b: string, bFormat: QemuFormat): Promise<boolean> {
    assertFormat(aFormat, 'compare first format');
    assertFormat(bFormat, 'compare second format');
    const args = ['-f', aFormat, '-F', bFormat, '--force-share', safePath(a), safePath(b)];
    const { exitCode } = await this.exec('compare', args, { ...this.copyOptions(), okExitCodes: [0, 1] });
    return exitCode === 0;
  }
}
