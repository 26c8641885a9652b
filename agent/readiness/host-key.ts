// Owns: SSH host key text handling for readiness: parsing OpenSSH public key lines, turning the
// raw key blob ssh2 hands to hostVerifier into "TYPE BASE64", fingerprints, matching a presented
// key against the known ones, and reading the keys cloud-init prints on the serial console.
// Must not: open connections or touch files (pure functions; ssh.ts and callers do I/O).
import { createHash } from 'node:crypto';

export interface PublicKeyLine {
  type: string;
  /** The key blob in base64 exactly as in authorized_keys / known_hosts. */
  base64: string;
  comment?: string;
}

const KEY_TYPE = /^(ssh-ed25519|ssh-rsa|ssh-dss|ecdsa-sha2-nistp(?:256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)$/;

/** Parses "TYPE BASE64 [comment]" (the type must be a known SSH key type). */
export function parsePublicKeyLine(line: string): PublicKeyLine | undefined {
  const parts = line.trim().split(/\s+/);
  if (parts.length < 2) return undefined;
  const [type, base64, ...rest] = parts as [string, string, ...string[]];
  if (!KEY_TYPE.test(type) || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) return undefined;
  // The blob starts with its own type as an SSH string; a line whose two disagree is not a key.
  if (blobType(Buffer.from(base64, 'base64')) !== type) return undefined;
  return rest.length ? { type, base64, comment: rest.join(' ') } : { type, base64 };
}

/** The key type stored at the start of an SSH wire-format public key blob. */
export function blobType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const len = blob.readUInt32BE(0);
  if (len === 0 || len > 64 || blob.length < 4 + len) return undefined;
  return blob.subarray(4, 4 + len).toString('latin1');
}

/** "TYPE BASE64" for a raw blob as ssh2 presents it to hostVerifier. */
export function blobToLine(blob: Buffer): string {
  return `${blobType(blob) ?? 'unknown'} ${blob.toString('base64')}`;
}

/** OpenSSH's "SHA256:..." fingerprint of a blob or a key line. */
export function fingerprint(key: Buffer | string): string {
  const blob = typeof key === 'string' ? Buffer.from(parsePublicKeyLine(key)?.base64 ?? '', 'base64') : key;
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

/**
 * The known keys in `known`: one or more key lines (newline separated, e.g. every key the guest
 * printed on its console). Unparseable lines are ignored.
 */
export function knownKeys(known: string): PublicKeyLine[] {
  return known.split(/\r?\n/).map(parsePublicKeyLine).filter((k): k is PublicKeyLine => k !== undefined);
}

/** True when the presented blob equals one of the known keys (compared by blob bytes). */
export function hostKeyMatches(blob: Buffer, known: readonly PublicKeyLine[]): boolean {
  return known.some((k) => Buffer.from(k.base64, 'base64').equals(blob));
}

/**
 * The host keys cloud-init's keys_to_console module printed between "-----BEGIN SSH HOST KEY
 * KEYS-----" and "-----END SSH HOST KEY KEYS-----" (the last such block wins: a rebooted guest
 * prints it again). Serial consoles add \r and sometimes prefixes such as "ci-info: " or
 * timestamps; those are stripped.
 */
export function hostKeysFromConsole(consoleText: string): string[] {
  const lines = consoleText.split(/\r?\n/);
  let block: string[] | undefined;
  let last: string[] = [];
  for (const raw of lines) {
    const line = raw.replace(/\r/g, '');
    if (line.includes('-----BEGIN SSH HOST KEY KEYS-----')) {
      block = [];
      continue;
    }
    if (line.includes('-----END SSH HOST KEY KEYS-----')) {
      if (block) last = block;
      block = undefined;
      continue;
    }
    if (block) {
      const m = /(?:^|\s)((?:ssh-|ecdsa-|sk-)\S+\s+[A-Za-z0-9+/]+={0,2})(?:\s|$)/.exec(line);
      const key = m ? parsePublicKeyLine(m[1]!) : undefined;
      if (key) block.push(`${key.type} ${key.base64}`);
    }
  }
  return last;
}
