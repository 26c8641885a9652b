// Owns: checking what goes into a seed before any byte is written: user-data and vendor-data
// (cloud-config YAML is parsed; scripts, MIME multipart and other cloud-init formats pass through),
// network-config (YAML with a version key), meta-data overrides, OpenStack network_data.json, and
// the identity fields (instance-id, hostname, uuid, SSH public keys).
// Must not: change the bytes it checks (kiln passes user files through byte for byte) or build
// ISO images. Every refusal is KILN_BAD_REQUEST with details.file and details.reason.
import { parseAllDocuments } from 'yaml';
import { KilnError } from '../errors.js';

export const EMPTY_CLOUD_CONFIG = Buffer.from('#cloud-config\n', 'utf8');

function bad(file: string, reason: string, extra: Record<string, unknown> = {}): KilnError {
  return new KilnError('KILN_BAD_REQUEST', `${file} ${reason}`, { file, reason, ...extra });
}

function utf8(file: string, data: Buffer): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    throw bad(file, 'is not valid UTF-8 text');
  }
}

/**
 * Parses one YAML document the way cloud-init's yaml.safe_load reads it (YAML 1.1, one
 * document, no application tags). Returns the plain value.
 */
export function parseYamlFile(file: string, data: Buffer): unknown {
  const text = utf8(file, data);
  const docs = parseAllDocuments(text, { version: '1.1', uniqueKeys: false, prettyErrors: true });
  if (!Array.isArray(docs)) throw bad(file, 'is not valid YAML');
  if (docs.length > 1) throw bad(file, `holds ${docs.length} YAML documents; cloud-init reads exactly one`);
  const doc = docs[0];
  if (!doc) return null;
  const problem = doc.errors[0] ?? doc.warnings.find((w) => /tag/i.test(w.message));
  if (problem) {
    const pos = problem.linePos?.[0];
    const firstLine = problem.message.split('\n')[0]!.replace(/:\s*$/, '');
    throw bad(file, `is not valid YAML: ${firstLine}`, pos ? { line: pos.line, column: pos.col } : {});
  }
  return doc.toJS({ maxAliasCount: 100 });
}

/** True when the bytes start with exactly the "#cloud-config" header (not #cloud-config-archive). */
export function hasCloudConfigHeader(data: Buffer): boolean {
  const header = '#cloud-config';
  if (data.length < header.length || data.subarray(0, header.length).toString('latin1') !== header) return false;
  if (data.length === header.length) return true;
  const next = data[header.length]!;
  return next === 0x0a || next === 0x0d || next === 0x20 || next === 0x09;
}

/**
 * user-data / vendor-data: a #cloud-config document must be a YAML mapping (or empty); anything
 * else (#!, MIME multipart, #include, jinja templates, gzip) is cloud-init's to interpret.
 */
export function checkUserData(file: string, data: Buffer): void {
  if (!hasCloudConfigHeader(data)) return;
  const value = parseYamlFile(file, data);
  if (value !== null && value !== undefined && !(typeof value === 'object' && !Array.isArray(value))) {
    throw bad(file, `has a #cloud-config header but its YAML is a ${Array.isArray(value) ? 'list' : typeof value}, not a mapping`);
  }
}

/** network-config (NoCloud): a YAML mapping with version 1 or 2, at the top or under "network". */
export function checkNetworkConfig(file: string, data: Buffer): 1 | 2 {
  const value = parseYamlFile(file, data);
  if (!isPlainObject(value)) throw bad(file, 'must be a YAML mapping with a version key (network config v1 or v2)');
  const holder = isPlainObject(value.network) ? value.network : value;
  if (!('version' in holder)) throw bad(file, 'has no version key (network config v1 or v2 needs "version: 1" or "version: 2")');
  const version = holder.version;
  if (version !== 1 && version !== 2) throw bad(file, `has version ${JSON.stringify(version)}; cloud-init reads network config version 1 or 2`);
  return version;
}

/** A NoCloud meta-data file: a YAML (or JSON) mapping. Returns it for callers that read fields. */
export function parseMetaData(file: string, data: Buffer): Record<string, unknown> {
  const value = parseYamlFile(file, data);
  if (!isPlainObject(value)) throw bad(file, 'must be a YAML mapping (instance-id, local-hostname, ...)');
  return value;
}

/** OpenStack network_data.json (config-drive): a JSON object with a "links" list. */
export function checkNetworkData(file: string, data: Buffer): void {
  const text = utf8(file, data);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    // A YAML v1/v2 file is the likely mistake: say which format config-drive needs.
    const hint = /^\s*(network:|version:)/m.test(text)
      ? 'is network config v1/v2 YAML, but config-drive reads OpenStack network_data.json (links, networks, services); use the nocloud format for v1/v2'
      : `is not valid JSON: ${(e as Error).message}`;
    throw bad(file, hint);
  }
  if (!isPlainObject(value) || !Array.isArray(value.links)) {
    throw bad(file, 'must be OpenStack network_data.json for config-drive: a JSON object with a "links" list');
  }
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/** instance-id: becomes a folder name under /var/lib/cloud/instances/ in the guest. */
export function checkInstanceId(id: unknown): string {
  if (typeof id !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$/.test(id)) {
    throw new KilnError('KILN_BAD_REQUEST',
      `instance-id ${JSON.stringify(id)} must be 1-128 characters: letters, digits and . _ : @ + - (no slashes or spaces)`,
      { field: 'instance-id', reason: 'invalid instance-id' });
  }
  return id;
}

/** local-hostname: RFC 1123 labels, dot-separated, at most 253 characters. */
export function checkHostname(name: unknown): string {
  const ok = typeof name === 'string' && name.length > 0 && name.length <= 253 &&
    name.split('.').every((l) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l));
  if (!ok) {
    throw new KilnError('KILN_BAD_REQUEST', `hostname ${JSON.stringify(name)} is not a valid host name (RFC 1123 labels)`,
      { field: 'hostname', reason: 'invalid hostname' });
  }
  return name as string;
}

export function checkUuid(uuid: unknown): string {
  if (typeof uuid !== 'string' || !/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(uuid)) {
    throw new KilnError('KILN_BAD_REQUEST', `uuid ${JSON.stringify(uuid)} is not a UUID`, { field: 'uuid', reason: 'invalid uuid' });
  }
  return uuid.toLowerCase();
}

const KEY_TYPE = /^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com|ssh-(rsa|ed25519)-cert-v01@openssh\.com)$/;

/** One OpenSSH public key line: "TYPE BASE64 [comment]", no line breaks. Returns it trimmed. */
export function checkSshKey(key: unknown, index = 0): string {
  const line = typeof key === 'string' ? key.trim() : '';
  const [type, body] = line.split(/\s+/);
  const ok = line.length > 0 && !/[\r\n\0]/.test(line) && type !== undefined && KEY_TYPE.test(type) &&
    body !== undefined && /^[A-Za-z0-9+/]+={0,2}$/.test(body);
  if (!ok) {
    throw new KilnError('KILN_BAD_REQUEST', `SSH key #${index + 1} is not one OpenSSH public key line ("ssh-ed25519 AAAA... comment")`,
      { field: 'sshKeys', index, reason: 'invalid SSH public key' });
  }
  return line;
}
