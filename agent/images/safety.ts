// Owns: the decision whether an image file may be used: kiln's own inspector first (pure header
// parsing, formats/), then the policy (declared format, allowed formats, virtual size ceiling),
// then `qemu-img info` with the detected format's explicit -f as a cross-check, never for raw,
// iso, gpt or mbr (raw images are not handed to qemu-img for probing). Any disagreement between
// the two readings is unsafe. Called at fetch time and before every use of a cached base.
// Must not: fetch, cache, move or delete files (images/ cache code does), or call qemu-img
// without the format the inspector found.
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { KilnError, isKilnError } from '../errors.js';
import type { KilnConfig } from '../config/schema.js';
import { inspectFile, unsafeError } from '../formats/inspect.js';
import { formatReason, type InspectResult, type KilnFormat, type Reason } from '../formats/types.js';
import type { QemuFormat, QemuImg, QemuImgInfo } from '../tools/qemu-img.js';

export type { KilnFormat } from '../formats/types.js';

export interface ImagePolicy {
  allowedFormats: readonly string[];
  maxVirtualSize: number;
}

export interface Assessment {
  format: KilnFormat;
  qemuFormat: QemuFormat;
  virtualSize: number;
  actualSize: number;
}

/** Every verdict detail, for `kiln disk inspect` / `kiln image inspect` (which show, not throw). */
export interface Evaluation {
  inspection: InspectResult;
  qemu?: QemuImgInfo;
  /** All reasons, inspector's and cross-check's, as "code: message". */
  reasons: string[];
  /** What assessImage throws; undefined when the image is accepted. */
  error?: KilnError;
  assessment: Assessment;
}

/** Formats a declared --disk-format may name (vpc is qemu's name for vhd). */
export const DECLARABLE_FORMATS = ['raw', 'qcow2', 'vmdk', 'iso', 'vhd', 'vpc', 'vhdx', 'vdi', 'luks', 'qed'] as const;

export function policyFromConfig(config: KilnConfig): ImagePolicy {
  return { allowedFormats: config.allowedFormats, maxVirtualSize: config.maxVirtualSize };
}

/** The format qemu boots it as: iso, gpt and mbr images are raw disks; vhd is qemu's vpc. */
export function qemuFormatOf(format: KilnFormat): QemuFormat {
  switch (format) {
    case 'iso':
    case 'gpt':
    case 'mbr':
    case 'raw':
      return 'raw';
    case 'vhd':
      return 'vpc';
    default:
      return format;
  }
}

/** The policy name of a format: partition-table disks are raw disks. */
function policyName(format: KilnFormat): string {
  return format === 'gpt' || format === 'mbr' ? 'raw' : format;
}

/** True when the detected format is what was declared (raw covers gpt/mbr disks; vpc is vhd). */
export function declaredMatches(detected: KilnFormat, declared: string): boolean {
  const d = declared === 'vpc' ? 'vhd' : declared;
  if (d === 'raw') return detected === 'raw' || detected === 'gpt' || detected === 'mbr';
  return d === detected;
}

function checkDeclared(declared: string | undefined): void {
  if (declared !== undefined && !(DECLARABLE_FORMATS as readonly string[]).includes(declared)) {
    throw new KilnError('KILN_BAD_REQUEST', `unknown disk format "${declared}" (one of ${DECLARABLE_FORMATS.join(', ')})`, { declaredFormat: declared });
  }
}

/** Compares qemu-img's reading with the inspector's; each disagreement is a reason. */
export function crossCheck(path: string, inspection: InspectResult, qemuFormat: QemuFormat, info: QemuImgInfo): Reason[] {
  const out: Reason[] = [];
  const r = (code: string, message: string) => out.push({ code, message });
  if (info.format !== qemuFormat) r('qemu_img.format', `qemu-img read the image as ${info.format}, not ${qemuFormat}`);
  if (info.virtualSize !== inspection.virtualSize) {
    r('qemu_img.virtual_size', `qemu-img says ${info.virtualSize} bytes, the inspector ${inspection.virtualSize}`);
  }
  if (info.backingFilename !== undefined || info.fullBackingFilename !== undefined) r('qemu_img.backing_file', `qemu-img sees a backing file "${info.backingFilename ?? info.fullBackingFilename}"`);
  if (info.dataFile !== undefined) r('qemu_img.data_file', `qemu-img sees an external data file "${info.dataFile}"`);
  const data = (info.raw as { 'format-specific'?: { data?: Record<string, unknown> } })['format-specific']?.data;
  if (qemuFormat === 'vmdk' && data) {
    const extents = Array.isArray(data.extents) ? (data.extents as Array<{ filename?: unknown }>) : [];
    const self = resolve(path);
    if (extents.length !== 1) r('qemu_img.vmdk_extents', `qemu-img sees ${extents.length} extents`);
    for (const e of extents) {
      if (typeof e.filename !== 'string' || resolve(e.filename) !== self) r('qemu_img.vmdk_extents', `qemu-img reads an extent from "${String(e.filename)}"`);
    }
    const createType = data['create-type'];
    if (createType !== 'monolithicSparse' && createType !== 'streamOptimized') r('qemu_img.vmdk_create_type', `qemu-img sees create type ${String(createType)}`);
  }
  return out;
}

/**
 * Inspects `path` and applies the policy without throwing for a refused image: the error
 * assessImage would throw is in `error`. Throws only when the file cannot be read.
 */
export async function evaluateImage(path: string, o: { declaredFormat?: string; policy: ImagePolicy; qemuImg: QemuImg; crossCheck?: boolean }): Promise<Evaluation> {
  checkDeclared(o.declaredFormat);
  const inspection = await inspectFile(path, { maxVirtualSize: o.policy.maxVirtualSize });
  const st = await stat(path);
  const format = inspection.format;
  const qemuFormat = qemuFormatOf(format);
  const assessment: Assessment = { format, qemuFormat, virtualSize: inspection.virtualSize, actualSize: st.isFile() ? st.blocks * 512 : inspection.size ?? 0 };
  const ev: Evaluation = { inspection, reasons: inspection.reasons.map(formatReason), assessment };
  const context = { path, declaredFormat: o.declaredFormat ?? null };

  if (!inspection.safe) {
    ev.error = unsafeError(inspection, context);
    return ev;
  }
  if (o.declaredFormat !== undefined && !declaredMatches(format, o.declaredFormat)) {
    ev.reasons.push(`format_mismatch: declared ${o.declaredFormat}, detected ${format}`);
    ev.error = new KilnError('KILN_FORMAT_MISMATCH', `the image is ${format}, but ${o.declaredFormat} was declared`, { ...context, detectedFormat: format });
    return ev;
  }
  if (!o.policy.allowedFormats.includes(policyName(format))) {
    ev.reasons.push(`format_not_allowed: ${format} is not in allowedFormats (${o.policy.allowedFormats.join(', ')})`);
    ev.error = new KilnError('KILN_FORMAT_NOT_ALLOWED', `${format} images are not enabled (allowedFormats: ${o.policy.allowedFormats.join(', ')})`, { ...context, format, allowedFormats: o.policy.allowedFormats });
    return ev;
  }
  if (qemuFormat === 'raw' || o.crossCheck === false) return ev;

  let crossReasons: Reason[];
  try {
    ev.qemu = await o.qemuImg.info(path, qemuFormat);
    crossReasons = crossCheck(path, inspection, qemuFormat, ev.qemu);
  } catch (e) {
    // qemu-img refusing (or choking on) what the inspector accepted is a disagreement too.
    if (!isKilnError(e, 'KILN_QEMU_IMG') && !isKilnError(e, 'KILN_TIMEOUT')) throw e;
    const tail = String(e.details.stderrTail ?? '').slice(-300);
    crossReasons = [{ code: 'qemu_img.refused', message: `qemu-img info -f ${qemuFormat} failed: ${e.code === 'KILN_TIMEOUT' ? 'timed out' : tail || e.message}` }];
  }
  if (crossReasons.length) {
    const reasons = crossReasons.map(formatReason);
    ev.reasons.push(...reasons);
    ev.error = new KilnError('KILN_IMAGE_UNSAFE', `image refused as unsafe (${format}): ${reasons[0]}`, {
      ...context, format, reasons, reasonCodes: crossReasons.map((x) => x.code),
    });
  }
  return ev;
}

/**
 * Inspector first (pure parser), then qemu-img info with explicit -f as a cross-check (not for
 * raw/iso). Throws KILN_IMAGE_UNSAFE (details.reasons), KILN_FORMAT_MISMATCH,
 * KILN_FORMAT_NOT_ALLOWED; KILN_NOT_FOUND when the file is missing.
 */
export async function assessImage(path: string, o: { declaredFormat?: string; policy: ImagePolicy; qemuImg: QemuImg }): Promise<Assessment> {
  const ev = await evaluateImage(path, o);
  if (ev.error) throw ev.error;
  return ev.assessment;
}

/** The verdict fields of `kiln disk inspect` / `kiln image inspect` (DiskInspectJson's shape). */
export interface ImageVerdict {
  format: KilnFormat;
  virtualSize: number;
  actualSize: number;
  backingChain: string[];
  safe: boolean;
  reasons: string[];
}

/**
 * The safety verdict on `path` without throwing for a refused image: what `kiln image inspect`
 * shows next to an image's record. A backing file is listed, never followed.
 */
export async function imageVerdict(path: string, o: { declaredFormat?: string; policy: ImagePolicy; qemuImg: QemuImg }): Promise<ImageVerdict> {
  const ev = await evaluateImage(path, o);
  const b = ev.inspection.backing;
  return {
    format: ev.inspection.format,
    virtualSize: ev.inspection.virtualSize,
    actualSize: ev.qemu?.actualSize ?? ev.assessment.actualSize,
    backingChain: b ? [b.kind === 'relative' ? resolve(path, '..', b.name) : b.name] : [],
    safe: ev.error === undefined,
    reasons: ev.reasons,
  };
}
