// Owns: `kiln seed build OUT.iso`, the offline drop-in for cloud-localds: reads the files, maps a
// NoCloud meta-data file onto a SeedSpec and writes the ISO with seed/. Works without a daemon.
// Must not: talk to the daemon or hold seed logic (agent/seed/ does).
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { KilnError } from '../../errors.js';
import { CONFIG_SCHEMA } from '../../config/schema.js';
import { formatSize, parseSize } from '../../config/units.js';
import { buildSeed, parseMetaData, seedFiles, writeSeedFile, SEED_FORMATS, type SeedFormat, type SeedSpec } from '../../seed/index.js';
import type { CliContext } from '../context.js';
import { keyValues } from '../output.js';
import { action } from '../run-action.js';

interface SeedBuildOptions {
  userData?: string;
  metaData: string;
  networkConfig?: string;
  vendorData?: string;
  format: SeedFormat;
  uuid?: string;
  timestamp?: string;
  maxFileSize: string;
}

export interface SeedBuildJson {
  path: string;
  format: SeedFormat;
  label: string;
  bytes: number;
  sha256: string;
  instanceId: string;
  files: Array<{ path: string; bytes: number }>;
}

async function readInput(flag: string, path: string, maxBytes: number): Promise<Buffer> {
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new KilnError('KILN_BAD_REQUEST', `${flag} ${path} is not a regular file`, { flag, path, reason: 'not a file' });
    // Refuse before reading: a seed file over the cap is never loaded.
    if (st.size > maxBytes) {
      throw new KilnError('KILN_BAD_REQUEST', `${flag} ${path} is ${st.size} bytes, over the cap of ${maxBytes} bytes per seed file`,
        { flag, path, reason: 'file over the size cap', bytes: st.size, maxFileBytes: maxBytes });
    }
    return await readFile(path);
  } catch (e) {
    if (e instanceof KilnError) throw e;
    throw new KilnError('KILN_BAD_REQUEST', `cannot read ${flag} ${path}: ${(e as Error).message}`, { flag, path, reason: 'unreadable file' });
  }
}

/** Public keys from NoCloud meta-data: a list, one string, or an EC2-style mapping of names to keys. */
function publicKeys(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  if (typeof value === 'string') return value.split('\n').map((l) => l.trim()).filter(Boolean);
  if (Array.isArray(value)) return value.map(String);
  if (typeof value === 'object') {
    return Object.keys(value).sort().flatMap((k) => publicKeys((value as Record<string, unknown>)[k]));
  }
  throw new KilnError('KILN_BAD_REQUEST', 'meta-data: public-keys must be a list of keys', { file: 'meta-data', reason: 'invalid public-keys' });
}

function timestampOf(text: string | undefined): Date {
  if (text !== undefined) {
    const d = /^\d+$/.test(text) ? new Date(Number(text) * 1000) : new Date(text);
    if (Number.isNaN(d.getTime())) throw new KilnError('KILN_BAD_REQUEST', `--timestamp "${text}" is not a date (ISO 8601 or seconds since 1970)`, { flag: '--timestamp', reason: 'invalid date' });
    return d;
  }
  // Reproducible builds: SOURCE_DATE_EPOCH fixes the dates, as for other build tools.
  const epoch = process.env.SOURCE_DATE_EPOCH;
  if (epoch && /^\d+$/.test(epoch)) return new Date(Number(epoch) * 1000);
  return new Date(Math.floor(Date.now() / 1000) * 1000);
}

export function register(program: Command, ctx: CliContext): void {
  const seed = program.commands.find((c) => c.name() === 'seed') ?? program.command('seed').description('cloud-init seed ISOs (offline)');
  seed
    .command('build')
    .description('write a cloud-init seed ISO (NoCloud cidata or config-drive config-2) without a daemon, like cloud-localds')
    .argument('<out>', 'the ISO file to write (mode 0600, replaced atomically)')
    .requiredOption('--meta-data <file>', 'NoCloud meta-data (YAML): instance-id, local-hostname, public-keys')
    .option('--user-data <file>', 'user-data: #cloud-config YAML (validated), a script or MIME multipart (default: an empty #cloud-config)')
    .option('--network-config <file>', 'nocloud: network config v1/v2 YAML; configdrive: OpenStack network_data.json')
    .option('--vendor-data <file>', 'vendor-data (same formats as user-data)')
    .addOption(new Option('--format <format>', 'seed format').choices([...SEED_FORMATS]).default('nocloud'))
    .option('--uuid <uuid>', 'configdrive: meta_data.json uuid (cloud-init\'s instance-id there; default the meta-data instance-id)')
    .option('--timestamp <date>', 'date stamped on every ISO entry (ISO 8601 or epoch seconds; default $SOURCE_DATE_EPOCH or now)')
    .option('--max-file-size <size>', 'largest file accepted into the seed', String(CONFIG_SCHEMA.seedMaxFileBytes.default))
    .addHelpText('after', `
Examples:
  kiln seed build seed.iso --user-data user-data.yaml --meta-data meta-data.yaml
  kiln seed build cd.iso --format configdrive --meta-data md.yaml --user-data ud --network-config network_data.json
  SOURCE_DATE_EPOCH=1700000000 kiln --json seed build seed.iso --meta-data md.yaml   # byte-reproducible

The same inputs and timestamp always give the same bytes. Invalid #cloud-config YAML, network
config without a version, files over the cap and names ISO9660/Joliet cannot hold are refused
with KILN_BAD_REQUEST and the reason.`)
    .action(action(ctx, async (out, outPath: string, opts: SeedBuildOptions) => {
      const maxFileBytes = parseSize(opts.maxFileSize, '--max-file-size');
      const metaBytes = await readInput('--meta-data', opts.metaData, maxFileBytes);
      const md = parseMetaData('meta-data', metaBytes);
      const instanceId = md['instance-id'];
      if (instanceId === undefined || instanceId === null) {
        throw new KilnError('KILN_BAD_REQUEST', 'meta-data: has no instance-id', { file: 'meta-data', reason: 'missing instance-id' });
      }
      // NoCloud passes the meta-data file through as given, so its hostname and keys are not
      // re-checked there; config-drive rebuilds them into meta_data.json and checks them.
      const nocloud = opts.format === 'nocloud';
      const spec: SeedSpec = {
        format: opts.format,
        instanceId: String(instanceId),
        hostname: nocloud ? 'localhost' : String(md['local-hostname'] ?? md.hostname ?? 'localhost'),
        sshKeys: nocloud ? [] : publicKeys(md['public-keys']),
        createdAt: timestampOf(opts.timestamp),
      };
      if (nocloud) spec.metaData = metaBytes;
      if (opts.uuid !== undefined) spec.uuid = opts.uuid;
      if (opts.userData) spec.userData = await readInput('--user-data', opts.userData, maxFileBytes);
      if (opts.networkConfig) spec.networkConfig = await readInput('--network-config', opts.networkConfig, maxFileBytes);
      if (opts.vendorData) spec.vendorData = await readInput('--vendor-data', opts.vendorData, maxFileBytes);

      const { label, files } = seedFiles(spec, { maxFileBytes });
      const iso = buildSeed(spec, { maxFileBytes });
      const path = resolve(outPath);
      await writeSeedFile(path, iso);
      const result: SeedBuildJson = {
        path,
        format: spec.format,
        label,
        bytes: iso.length,
        sha256: createHash('sha256').update(iso).digest('hex'),
        instanceId: spec.instanceId,
        files: files.map((f) => ({ path: f.path, bytes: f.data.length })),
      };
      out.result(result, (r: SeedBuildJson) =>
        keyValues([
          ['wrote', r.path],
          ['format', `${r.format} (label ${r.label})`],
          ['size', `${formatSize(r.bytes)} (${r.bytes} bytes)`],
          ['sha256', r.sha256],
          ['instance-id', r.instanceId],
          ['files', r.files.map((f) => f.path).join(', ')],
        ]),
      );
    }));
}
