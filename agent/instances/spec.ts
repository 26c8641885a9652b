// Owns: what a provisioning request means once defaults are applied (ResolvedSpec), and the
// fingerprint that decides "same spec" (idempotent) versus "different spec" (KILN_CONFLICT).
// Must not: do I/O or talk to services; the API parses JSON into a ProvisionRequest first.
import { createHash } from 'node:crypto';
import { KilnError } from '../errors.js';
import type { KilnConfig } from '../config/schema.js';
import type { NetworkSpec } from './deps.js';

export type WaitFor = 'running' | 'ssh';

/** A provisioning request as the API and the CLI send it (sizes in bytes, files as contents). */
export interface ProvisionRequest {
  name: string;
  /** An http(s) URL to fetch, or a cached image reference `sha256:HEX`. */
  image: string;
  checksum?: string;
  diskFormat?: string;
  minDisk?: number;
  minRam?: number;
  diskSize?: number;
  diskMode?: 'overlay' | 'flat';
  bootVolume?: string;
  memory?: number;
  vcpus?: number;
  userData?: string;
  /** authorized_keys text: one or more public keys, one a line. */
  sshKey?: string;
  networkConfig?: string;
  seed?: 'nocloud' | 'configdrive';
  network?: string;
  wait?: WaitFor;
  sshUser?: string;
}

/** The request with defaults applied; stored in record.json (file contents only as hashes). */
export interface ResolvedSpec {
  image: { url: string | null; ref: string | null; checksum: string | null; diskFormat: string | null; minDisk: number | null; minRam: number | null };
  disk: { mode: 'overlay' | 'flat' | 'volume'; sizeBytes: number | null; device: string | null };
  memory: number;
  vcpus: number;
  seed: 'nocloud' | 'configdrive';
  network: NetworkSpec;
  userDataSha256: string | null;
  networkConfigSha256: string | null;
  sshKeys: string[];
}

/** Instance names: DNS-label-like, safe as folder, domain and host names (the API checks the same rule). */
export const INSTANCE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function checkInstanceName(name: string): string {
  if (!INSTANCE_NAME.test(name)) {
    throw new KilnError('KILN_BAD_REQUEST', `instance name "${name.slice(0, 80)}" is invalid: use 1-63 lowercase letters, digits and inner hyphens`, { field: 'name' });
  }
  return name;
}

export const IMAGE_REF_PATTERN = /^sha256:[0-9a-f]{6,64}$/;
const NETWORK_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export function parseNetwork(text: string): NetworkSpec {
  if (text === 'user') return { kind: 'user' };
  if (text.startsWith('bridge:')) {
    const bridge = text.slice('bridge:'.length);
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(bridge)) throw new KilnError('KILN_BAD_REQUEST', `bridge name "${bridge}" is invalid`, { field: 'network' });
    return { kind: 'bridge', bridge };
  }
  if (!NETWORK_NAME.test(text)) throw new KilnError('KILN_BAD_REQUEST', `network "${text}" is invalid: use user, NAME or bridge:BR`, { field: 'network' });
  return { kind: 'network', name: text };
}

export function networkText(n: NetworkSpec): string {
  return n.kind === 'user' ? 'user' : n.kind === 'bridge' ? `bridge:${n.bridge}` : n.name;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

export function sshKeyLines(text: string | undefined): string[] {
  if (!text) return [];
  return text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
}

export function resolveSpec(req: ProvisionRequest, config: Pick<KilnConfig, 'defaultMemory' | 'defaultVcpus' | 'defaultNetwork' | 'diskMode'>): ResolvedSpec {
  const isRef = IMAGE_REF_PATTERN.test(req.image);
  if (!isRef && !/^https?:\/\/./.test(req.image)) {
    throw new KilnError('KILN_BAD_REQUEST', 'image must be an http(s) URL or a cached reference sha256:HEX', { field: 'image' });
  }
  if (req.bootVolume !== undefined && req.diskMode !== undefined) {
    throw new KilnError('KILN_BAD_REQUEST', 'bootVolume and diskMode exclude each other (a boot volume is written in full)', { field: 'bootVolume' });
  }
  if (req.bootVolume !== undefined && !/^\/dev\/[A-Za-z0-9/_.:-]+$/.test(req.bootVolume)) {
    throw new KilnError('KILN_BAD_REQUEST', 'bootVolume must be a device path under /dev', { field: 'bootVolume' });
  }
  const sshKeys = sshKeyLines(req.sshKey);
  for (const k of sshKeys) {
    if (!/^(ssh-|ecdsa-|sk-)[A-Za-z0-9@.-]+ [A-Za-z0-9+/=]+( .*)?$/.test(k)) {
      throw new KilnError('KILN_BAD_REQUEST', 'sshKey must hold OpenSSH public keys, one a line', { field: 'sshKey' });
    }
  }
  return {
    image: {
      url: isRef ? null : req.image,
      ref: isRef ? req.image : null,
      checksum: req.checksum ?? null,
      diskFormat: req.diskFormat ?? null,
      minDisk: req.minDisk ?? null,
      minRam: req.minRam ?? null,
    },
    disk: req.bootVolume
      ? { mode: 'volume', sizeBytes: null, device: req.bootVolume }
      : { mode: req.diskMode ?? (config.diskMode as 'overlay' | 'flat'), sizeBytes: req.diskSize ?? null, device: null },
    memory: req.memory ?? config.defaultMemory,
    vcpus: req.vcpus ?? config.defaultVcpus,
    seed: req.seed ?? 'nocloud',
    network: parseNetwork(req.network ?? config.defaultNetwork),
    userDataSha256: req.userData === undefined ? null : sha256(req.userData),
    networkConfigSha256: req.networkConfig === undefined ? null : sha256(req.networkConfig),
    sshKeys,
  };
}

/** Canonical text of a spec: equal specs give equal fingerprints whatever the key order. */
export function fingerprint(spec: ResolvedSpec): string {
  const canon = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canon);
    if (v && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon((v as Record<string, unknown>)[k])]));
    }
    return v;
  };
  return sha256(JSON.stringify(canon(spec)));
}

/** Names of the fields that differ, for the KILN_CONFLICT details. */
export function specDifferences(a: ResolvedSpec, b: ResolvedSpec): string[] {
  const out: string[] = [];
  const walk = (x: unknown, y: unknown, path: string) => {
    if (x && y && typeof x === 'object' && typeof y === 'object' && !Array.isArray(x) && !Array.isArray(y)) {
      for (const k of new Set([...Object.keys(x), ...Object.keys(y)])) walk((x as Record<string, unknown>)[k], (y as Record<string, unknown>)[k], path ? `${path}.${k}` : k);
    } else if (JSON.stringify(x) !== JSON.stringify(y)) out.push(path);
  };
  walk(a, b, '');
  return out;
}
