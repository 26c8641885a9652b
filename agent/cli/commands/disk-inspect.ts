// Owns: `kiln disk inspect PATH|NAME`, offline (no daemon): kiln's inspector plus qemu-img info
// (explicit -f) on a disk file, an image, or an instance's disk (<state>/instances/NAME/disk.*),
// printing format, sizes, backing chain and the safety verdict with reasons (DiskInspectJson).
// A backing file is followed only into kiln's own image cache (<state>/images/), never elsewhere.
// Must not: modify anything, talk to the daemon, or run qemu-img except through tools/qemu-img.ts.
import type { Command } from 'commander';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import type { DiskInspectJson } from '../../api/protocol.js';
import { loadConfig } from '../../config/load.js';
import { formatSize } from '../../config/units.js';
import { ERROR_CODES, KilnError } from '../../errors.js';
import { evaluateImage, policyFromConfig, qemuFormatOf, type ImagePolicy } from '../../images/safety.js';
import { QemuImg } from '../../tools/qemu-img.js';
import type { CliContext } from '../context.js';
import { keyValues } from '../output.js';
import { action } from '../run-action.js';

export const DEFAULT_STATE_DIR = '/var/lib/kiln';
const MAX_CHAIN = 8;
const INSTANCE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export interface DiskInspectReport extends DiskInspectJson {
  path: string;
  qemuFormat: string;
  matches: string[];
  details: Record<string, unknown>;
}

export interface DiskInspectOptions {
  stateDir: string;
  declaredFormat?: string;
  policy: ImagePolicy;
  qemuImg: QemuImg;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

/** PATH as given, or the disk of instance NAME (its disk.* file, or the device in its record). */
export async function resolveTarget(target: string, stateDir: string): Promise<string> {
  if (target.includes('/') || (await exists(target))) return resolve(target);
  if (!INSTANCE_NAME.test(target)) throw new KilnError('KILN_BAD_REQUEST', `"${target}" is neither a file nor an instance name`, { target });
  const dir = join(stateDir, 'instances', target);
  const entries = await readdir(dir).catch(() => undefined);
  if (!entries) throw new KilnError('KILN_NOT_FOUND', `no file ${target} and no instance ${target} in ${stateDir}`, { target, stateDir });
  const disk = entries.filter((e) => /^disk\.[a-z0-9]+$/.test(e)).sort()[0];
  if (disk) return join(dir, disk);
  const record = await readFile(join(dir, 'record.json'), 'utf8').then((t) => JSON.parse(t) as { disk?: { device?: unknown } }, () => undefined);
  if (record && typeof record.disk?.device === 'string') return record.disk.device;
  throw new KilnError('KILN_NOT_FOUND', `instance ${target} has no disk file in ${dir}`, { target, dir });
}

async function insideDir(path: string, dir: string): Promise<boolean> {
  try {
    const [p, d] = await Promise.all([realpath(path), realpath(dir)]);
    return p.startsWith(d + sep);
  } catch {
    return false;
  }
}

/**
 * Inspects `path` and, when it is a qcow2 overlay onto a base in kiln's image cache, the base
 * too (an instance disk). Any other backing file is reported and makes the verdict unsafe.
 */
export async function inspectDisk(path: string, o: DiskInspectOptions, depth = 0): Promise<DiskInspectReport> {
  const ev = await evaluateImage(path, o.declaredFormat === undefined ? { policy: o.policy, qemuImg: o.qemuImg } : { policy: o.policy, qemuImg: o.qemuImg, declaredFormat: o.declaredFormat });
  const insp = ev.inspection;
  const report: DiskInspectReport = {
    path,
    format: insp.format,
    qemuFormat: qemuFormatOf(insp.format),
    virtualSize: insp.virtualSize,
    actualSize: ev.qemu?.actualSize ?? ev.assessment.actualSize,
    backingChain: [],
    safe: ev.error === undefined,
    reasons: [...ev.reasons],
    matches: insp.matches,
    details: insp.details,
  };
  const backing = insp.backing;
  if (!backing) return report;

  const resolved = backing.kind === 'absolute' ? backing.name : backing.kind === 'relative' ? resolve(dirname(path), backing.name) : undefined;
  report.backingChain.push(resolved ?? backing.name);
  const onlyBacking = insp.reasons.every((r) => r.code === 'qcow2.backing_file');
  const trusted = resolved !== undefined && (await insideDir(resolved, join(o.stateDir, 'images')));
  if (!onlyBacking || !trusted || depth >= MAX_CHAIN || insp.format !== 'qcow2') return report;

  // kiln's own overlay: judge the base instead, and insist on a recorded backing format (a
  // backing file without one makes qemu probe it: CVE-2024-40767).
  const base = await inspectDisk(resolved, { ...o, declaredFormat: undefined }, depth + 1);
  report.backingChain.push(...base.backingChain);
  const reasons: string[] = base.reasons.map((r) => `backing ${resolved}: ${r}`);
  if (backing.format === undefined) reasons.push('qcow2.backing_format: the overlay does not record its backing format (qemu would probe it)');
  else if (backing.format !== base.qemuFormat) reasons.push(`qcow2.backing_format: the overlay says its backing file is ${backing.format}, it is ${base.qemuFormat}`);
  try {
    const info = await o.qemuImg.info(path, 'qcow2');
    report.actualSize = info.actualSize;
    if (info.virtualSize !== insp.virtualSize) reasons.push(`qemu_img.virtual_size: qemu-img says ${info.virtualSize} bytes, the inspector ${insp.virtualSize}`);
    if (info.backingFilename !== backing.name) reasons.push(`qemu_img.backing_file: qemu-img sees backing file "${info.backingFilename}", the inspector "${backing.name}"`);
    if (info.dataFile !== undefined) reasons.push(`qemu_img.data_file: qemu-img sees an external data file "${info.dataFile}"`);
  } catch (e) {
    if (!(e instanceof KilnError) || (e.code !== 'KILN_QEMU_IMG' && e.code !== 'KILN_TIMEOUT')) throw e;
    reasons.push(`qemu_img.refused: qemu-img info -f qcow2 failed: ${String(e.details.stderrTail ?? e.message).slice(-300)}`);
  }
  report.reasons = reasons;
  report.safe = reasons.length === 0;
  return report;
}

function human(r: DiskInspectReport): string {
  const lines = keyValues([
    ['path', r.path],
    ['format', r.format === r.qemuFormat ? r.format : `${r.format} (boots as ${r.qemuFormat})`],
    ['virtual size', `${formatSize(r.virtualSize)} (${r.virtualSize} bytes)`],
    ['actual size', `${formatSize(r.actualSize)} (${r.actualSize} bytes)`],
    ['backing chain', r.backingChain.length ? r.backingChain.join(' -> ') : 'none'],
    ['verdict', r.safe ? 'safe' : 'UNSAFE'],
  ]);
  return r.reasons.length ? `${lines}\nreasons:\n${r.reasons.map((x) => `  - ${x}`).join('\n')}` : lines;
}

export function register(program: Command, ctx: CliContext): void {
  const disk = program.commands.find((c) => c.name() === 'disk') ?? program.command('disk').description('root disks and boot volumes');
  disk
    .command('inspect')
    .description('format, virtual and allocated size, backing chain, safety verdict (works without a daemon)')
    .argument('<path|name>', 'an image or disk file, a block device, or an instance name')
    .option('--state-dir <dir>', `kiln state directory, for instance names and the image cache (default ${DEFAULT_STATE_DIR}, or KILN_STATE_DIR)`)
    .option('--disk-format <fmt>', 'the format the image is declared to be; a different detected format is unsafe')
    .addHelpText('after', `
Exits 0 when the disk is safe, ${ERROR_CODES.KILN_IMAGE_UNSAFE.exit} (KILN_IMAGE_UNSAFE) when it is not; the report is printed either way.

Examples:
  kiln disk inspect ./ubuntu-24.04.qcow2
  kiln disk inspect web1                          # <state>/instances/web1/disk.*
  kiln --json disk inspect --disk-format raw image.img | jq .reasons`)
    .action(action(ctx, async (out, target: string, opts: { stateDir?: string; diskFormat?: string }) => {
      const config = loadConfig({ env: process.env });
      const stateDir = opts.stateDir ?? config.stateDir; // KILN_STATE_DIR, else /var/lib/kiln
      const path = await resolveTarget(target, stateDir);
      const o: DiskInspectOptions = { stateDir, policy: policyFromConfig(config), qemuImg: QemuImg.fromConfig(config) };
      if (opts.diskFormat !== undefined) o.declaredFormat = opts.diskFormat;
      const report = await inspectDisk(path, o);
      out.result(report, human);
      if (!report.safe) process.exitCode = ERROR_CODES.KILN_IMAGE_UNSAFE.exit;
    }));
}
