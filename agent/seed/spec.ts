// Owns: the SeedSpec type (what a caller asks a seed to carry) and its checks: format, identity
// fields, SSH keys, timestamp and the per-file size cap, before any content is parsed.
// Must not: build files or images (nocloud.ts, configdrive.ts, build.ts do).
import { KilnError } from '../errors.js';
import { checkHostname, checkInstanceId, checkSshKey, checkUuid } from './content.js';

export type SeedFormat = 'nocloud' | 'configdrive';
export const SEED_FORMATS: readonly SeedFormat[] = ['nocloud', 'configdrive'];

export interface SeedSpec {
  format: SeedFormat;
  instanceId: string;
  hostname: string;
  userData?: Buffer;
  networkConfig?: Buffer;
  vendorData?: Buffer;
  /** NoCloud only: a meta-data file passed through as given, as cloud-localds does. */
  metaData?: Buffer;
  sshKeys: string[];
  /** The instance's creation time: every date in the ISO, so seeds are reproducible. */
  createdAt: Date;
  /** config-drive meta_data.json "uuid" (cloud-init's instance-id there); default instanceId. */
  uuid?: string;
}

/** A spec whose fields passed the checks; SSH keys trimmed, uuid lower-cased. */
export type CheckedSpec = Readonly<SeedSpec>;

const INPUTS = [
  ['userData', 'user-data'],
  ['networkConfig', 'network-config'],
  ['vendorData', 'vendor-data'],
  ['metaData', 'meta-data'],
] as const;

export function checkSpec(spec: SeedSpec, maxFileBytes: number): CheckedSpec {
  if (!SEED_FORMATS.includes(spec.format)) {
    throw new KilnError('KILN_BAD_REQUEST', `seed format ${JSON.stringify(spec.format)} is not one of ${SEED_FORMATS.join(', ')}`,
      { field: 'format', reason: 'unknown seed format' });
  }
  // Sizes first: nothing over the cap gets parsed.
  for (const [key, file] of INPUTS) {
    const data = spec[key];
    if (data === undefined) continue;
    if (!Buffer.isBuffer(data)) throw new KilnError('KILN_BAD_REQUEST', `${file} must be bytes`, { file, reason: 'not bytes' });
    if (data.length > maxFileBytes) {
      throw new KilnError('KILN_BAD_REQUEST', `${file} is ${data.length} bytes, over the cap of ${maxFileBytes} bytes per seed file`,
        { file, reason: 'file over the size cap', bytes: data.length, maxFileBytes });
    }
  }
  if (!Array.isArray(spec.sshKeys)) throw new KilnError('KILN_BAD_REQUEST', 'sshKeys must be a list', { field: 'sshKeys', reason: 'not a list' });
  if (!(spec.createdAt instanceof Date) || Number.isNaN(spec.createdAt.getTime())) {
    throw new KilnError('KILN_BAD_REQUEST', 'createdAt must be a valid date', { field: 'createdAt', reason: 'invalid date' });
  }
  const checked: SeedSpec = {
    ...spec,
    instanceId: checkInstanceId(spec.instanceId),
    hostname: checkHostname(spec.hostname),
    sshKeys: spec.sshKeys.map((k, i) => checkSshKey(k, i)),
  };
  if (spec.uuid !== undefined) checked.uuid = checkUuid(spec.uuid);
  return checked;
}
