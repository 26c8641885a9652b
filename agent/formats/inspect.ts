// Owns: kiln's image format inspector: which formats' signatures match at their canonical
// offsets, the multiple-format rule (unsafe, except the harmless iso+gpt/mbr and fixed-VHD
// hybrids), running the matched format's parser, and the virtual size ceiling. Works on a file,
// a buffer or a download in progress, reading a bounded number of bytes.
// Must not: run qemu-img or any program, decide policy (allowed formats, declared format: that is
// images/safety.ts), or throw for malformed input: bad headers become reasons, not exceptions.
import { KilnError } from '../errors.js';
import { BoundedReader, OutsideWindow, ReadBudgetExceeded, StreamWindow, bufferSource, openFileSource, type ByteSource } from './source.js';
import { reason, type FormatReport, type InspectOptions, type InspectResult, type KilnFormat, type Reason } from './types.js';
import { parseQcow2, probeQcow2 } from './qcow2.js';
import { parseVmdk, probeVmdk } from './vmdk.js';
import { parseVhd, probeVhdEnd, probeVhdStart } from './vhd.js';
import { parseVhdx, probeVhdx } from './vhdx.js';
import { parseVdi, probeVdi } from './vdi.js';
import { parseQed, probeQed } from './qed.js';
import { parseLuks, probeLuks } from './luks.js';
import { parseIso, probeIso } from './iso.js';
import { parsePartitioned, probeGpt, probeMbr } from './partition.js';

/** Every canonical signature offset lies in the first 64 KiB (the ISO descriptors end there). */
export const HEAD_BYTES = 64 * 1024;
/** Default cap on the bytes one inspection reads (the largest need: a 2 MiB qcow2 header cluster, VHDX tables). */
export const DEFAULT_MAX_READ_BYTES = 8 * 1024 * 1024;
const FOOTER = 512;

/** Formats that define their own container; at most one may match. */
const CONTAINERS: readonly KilnFormat[] = ['qcow2', 'qed', 'vmdk', 'vhdx', 'luks', 'vdi', 'vhd'];

export interface Detection {
  matches: KilnFormat[];
  format: KilnFormat;
  reasons: Reason[];
  /** The VHD footer is only at the end (a fixed VHD: raw data plus a footer). */
  vhdFooterAtEndOnly: boolean;
}

/** Which signatures match and which format the image is; pure, on the head and tail bytes. */
export function detect(head: Buffer, tail: Buffer | undefined): Detection {
  const vhdStart = probeVhdStart(head);
  const vhdEnd = probeVhdEnd(tail);
  const probes: Array<[KilnFormat, boolean]> = [
    ['qcow2', probeQcow2(head)],
    ['qed', probeQed(head)],
    ['vmdk', probeVmdk(head)],
    ['vhdx', probeVhdx(head)],
    ['luks', probeLuks(head)],
    ['vdi', probeVdi(head)],
    ['vhd', vhdStart || vhdEnd],
    ['iso', probeIso(head)],
    ['gpt', probeGpt(head)],
    ['mbr', probeMbr(head)],
  ];
  const matches = probes.filter(([, hit]) => hit).map(([f]) => f);
  const vhdFooterAtEndOnly = vhdEnd && !vhdStart;
  // A GPT disk always carries a protective MBR: that pair is one format.
  const formats = matches.includes('gpt') ? matches.filter((f) => f !== 'mbr') : matches;
  const strong = formats.filter((f) => CONTAINERS.includes(f));
  const weak = formats.filter((f) => !CONTAINERS.includes(f));
  const reasons: Reason[] = [];
  let format: KilnFormat;
  if (strong.length === 0) {
    // ISO hybrids (isohybrid MBR, UEFI GPT) are one image read two harmless ways.
    format = weak.includes('iso') ? 'iso' : weak.includes('gpt') ? 'gpt' : weak.includes('mbr') ? 'mbr' : 'raw';
  } else {
    format = strong[0]!;
    const harmlessFixedVhd = strong.length === 1 && format === 'vhd' && vhdFooterAtEndOnly;
    if (strong.length > 1 || (weak.length > 0 && !harmlessFixedVhd)) {
      reasons.push(reason('multiple_formats', `the signatures of ${formats.join(' and ')} all match: one image, several readings`));
    }
  }
  return { matches, format, reasons, vhdFooterAtEndOnly };
}

async function parse(format: KilnFormat, r: BoundedReader, head: Buffer, tail: Buffer | undefined): Promise<FormatReport> {
  switch (format) {
    case 'qcow2': return parseQcow2(r, head);
    case 'vmdk': return parseVmdk(r, head);
    case 'vhd': return parseVhd(r, head, tail);
    case 'vhdx': return parseVhdx(r);
    case 'vdi': return parseVdi(r, head);
    case 'qed': return parseQed(r, head);
    case 'luks': return parseLuks(r, head);
    case 'iso': return parseIso(r, head);
    case 'gpt':
    case 'mbr': return parsePartitioned(r, head, format);
    case 'raw': return { format: 'raw', virtualSize: r.size, reasons: [], details: {} };
  }
}

/**
 * Inspects an image through `source`. Malformed or hostile headers come back as reasons
 * (safe: false); it throws only for I/O failures of the source (and OutsideWindow, which tells a
 * stream inspection that it must wait for the whole download).
 */
export async function inspectSource(source: ByteSource, o: InspectOptions = {}): Promise<InspectResult> {
  const r = new BoundedReader(source, o.maxReadBytes ?? DEFAULT_MAX_READ_BYTES);
  const reasons: Reason[] = [];
  let matches: KilnFormat[] = [];
  let format: KilnFormat = 'raw';
  let report: FormatReport | undefined;
  try {
    const head = await r.read(0, HEAD_BYTES);
    const size = r.size;
    let tail: Buffer | undefined;
    if (size !== undefined && size >= FOOTER) {
      tail = size <= head.length ? head.subarray(size - FOOTER, size) : await r.read(size - FOOTER, FOOTER);
    }
    const d = detect(head, tail);
    matches = d.matches;
    format = d.format;
    reasons.push(...d.reasons);
    report = await parse(format, r, head, tail);
    reasons.push(...report.reasons);
  } catch (e) {
    if (e instanceof ReadBudgetExceeded) {
      reasons.push(reason('inspect.read_budget', e.message));
    } else {
      throw e;
    }
  }
  const virtualSize = report?.virtualSize ?? (format === 'raw' ? r.size : undefined);
  if (virtualSize === undefined && !reasons.some((x) => x.code.endsWith('.truncated'))) {
    reasons.push(reason('inspect.virtual_size', 'the virtual size could not be determined'));
  }
  if (virtualSize !== undefined && o.maxVirtualSize !== undefined && virtualSize > o.maxVirtualSize) {
    reasons.push(reason('virtual_size', `virtual size ${virtualSize} exceeds the ceiling ${o.maxVirtualSize}`));
  }
  const result: InspectResult = {
    format,
    matches,
    virtualSize: virtualSize !== undefined && Number.isFinite(virtualSize) ? virtualSize : 0,
    size: r.size,
    details: report?.details ?? {},
    reasons,
    safe: reasons.length === 0,
    bytesRead: r.bytesRead,
  };
  if (report?.backing) result.backing = report.backing;
  if (report?.dataFile !== undefined) result.dataFile = report.dataFile;
  return result;
}

export function inspectBuffer(buf: Buffer, o: InspectOptions = {}): Promise<InspectResult> {
  return inspectSource(bufferSource(buf), o);
}

/** Inspects a file (or block device) with positional reads; never reads it whole. */
export async function inspectFile(path: string, o: InspectOptions = {}): Promise<InspectResult> {
  const src = await openFileSource(path);
  try {
    return await inspectSource(src, o);
  } finally {
    await src.close();
  }
}

/**
 * Inspects a download while it streams: feed every chunk to write(); check() answers as soon as
 * the head alone decides (a qcow2 with a backing file is refused after its first bytes), and
 * finish() gives the verdict on the whole stream. Memory: the head and tail windows only.
 */
export class StreamInspector {
  private readonly window: StreamWindow;
  constructor(private readonly options: InspectOptions = {}, windows: { headBytes?: number; tailBytes?: number } = {}) {
    this.window = new StreamWindow(windows.headBytes ?? 4 * 1024 * 1024, windows.tailBytes ?? 64 * 1024);
  }

  write(chunk: Buffer): void {
    this.window.write(chunk);
  }

  get bytesSeen(): number {
    return this.window.bytesSeen;
  }

  /**
   * A verdict from the bytes seen so far, or undefined when it needs more (bytes past the head
   * window, or the end of the stream). Size-dependent rules wait for finish().
   */
  async check(): Promise<InspectResult | undefined> {
    if (this.window.bytesSeen < HEAD_BYTES) return undefined;
    try {
      return await inspectSource(this.window.source(), this.options);
    } catch (e) {
      if (e instanceof OutsideWindow) return undefined;
      throw e;
    }
  }

  /** The verdict on the whole stream. Bytes needed outside the windows make it unsafe. */
  async finish(): Promise<InspectResult> {
    this.window.end();
    try {
      return await inspectSource(this.window.source(), this.options);
    } catch (e) {
      if (!(e instanceof OutsideWindow)) throw e;
      const r: Reason = reason('inspect.outside_window', `${e.message}; inspect the stored file instead`);
      return { format: 'raw', matches: [], virtualSize: 0, size: this.window.bytesSeen, details: {}, reasons: [r], safe: false, bytesRead: 0 };
    }
  }
}

/** Thrown-error form of an unsafe result, for callers that refuse (images/safety.ts). */
export function unsafeError(result: InspectResult, context: Record<string, unknown> = {}): KilnError {
  const reasons = result.reasons.map((x) => `${x.code}: ${x.message}`);
  return new KilnError('KILN_IMAGE_UNSAFE', `image refused as unsafe (${result.format}): ${reasons[0] ?? 'unknown reason'}${reasons.length > 1 ? ` (+${reasons.length - 1} more)` : ''}`, {
    ...context, format: result.format, matches: result.matches, reasons, reasonCodes: result.reasons.map((x) => x.code),
  });
}
