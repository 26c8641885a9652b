// Owns: the per-instance folder <state>/instances/<name>/ and its record.json: the types, the
// atomic write (tmp file in the folder, fsync, rename, fsync the folder) and reading them back.
// Must not: decide anything about provisioning; service.ts owns the phases and their meaning.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { DiskJson } from '../api/protocol.js';
import { KilnError } from '../errors.js';
import { atomicWrite, fsyncDir } from '../images/fsutil.js';
import type { DomainSpecLike } from './deps.js';
import type { ResolvedSpec, WaitFor } from './spec.js';

export const RECORD_FILE = 'record.json';

/**
 * provisioning: this kilnd is creating it (a crash leaves it for reconcile to roll back);
 * ready: provisioned; removing: rm started (reconcile finishes it).
 */
export type Phase = 'provisioning' | 'ready' | 'removing';

export interface InstanceRecord {
  version: 1;
  name: string;
  uuid: string;
  phase: Phase;
  spec: ResolvedSpec;
  fingerprint: string;
  wait: WaitFor;
  sshUser: string;
  image: { digest: string } | null;
  disk: DiskJson | null;
  seed: { path: string; format: 'nocloud' | 'configdrive' } | null;
  /** The domain as defined, so reconcile can define it again if libvirt lost it. */
  domain: DomainSpecLike | null;
  ssh: { host: string; port: number } | null;
  /** The guest's host key from --wait ssh ("TYPE BASE64"). */
  sshHostKey?: string;
  /** Last state seen from the hypervisor. */
  state: string;
  ready: boolean;
  createdAt: string;
  updatedAt: string;
  /** Seconds per provisioning step. */
  steps: Record<string, number>;
}

export function instanceDir(instancesRoot: string, name: string): string {
  return join(instancesRoot, name);
}


export async function makeInstanceDir(instancesRoot: string, name: string): Promise<string> {
  const dir = instanceDir(instancesRoot, name);
  await mkdir(dir, { mode: 0o700, recursive: true });
  await fsyncDir(instancesRoot);
  return dir;
}

export async function writeRecord(instancesRoot: string, record: InstanceRecord): Promise<void> {
  // The temporary file is `.tmp-record.json-*`: reconcile's trash sweep knows that name.
  await atomicWrite(join(instanceDir(instancesRoot, record.name), RECORD_FILE), JSON.stringify(record, null, 2) + '\n');
}

/** The record of `name`, or undefined when its folder or record.json does not exist. */
export async function readRecord(instancesRoot: string, name: string): Promise<InstanceRecord | undefined> {
  let text: string;
  try {
    text = await readFile(join(instanceDir(instancesRoot, name), RECORD_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const r = JSON.parse(text) as InstanceRecord;
    if (r.version !== 1 || r.name !== name) throw new Error('unexpected version or name');
    return r;
  } catch (e) {
    throw new KilnError('KILN_INTERNAL', `record of instance ${name} is unreadable: ${(e as Error).message}`, { name });
  }
}

/** Names of the folders under instances/ (with or without a record). */
export async function listInstanceDirs(instancesRoot: string): Promise<string[]> {
  const entries = await readdir(instancesRoot, { withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [];
    throw e;
  });
  return entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name).sort();
}

/** Removes the folder; a rename first makes the removal atomic for readers of instances/. */
export async function removeInstanceDir(instancesRoot: string, name: string): Promise<void> {
  const dir = instanceDir(instancesRoot, name);
  const trash = join(instancesRoot, `.removing-${name}-${randomBytes(4).toString('hex')}`);
  try {
    await rename(dir, trash);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  await fsyncDir(instancesRoot);
  await rm(trash, { recursive: true, force: true });
}

/** Leftovers of removals and record writes interrupted by a crash (start-up only: no write is in flight). */
export async function removeTrash(instancesRoot: string): Promise<void> {
  const entries = await readdir(instancesRoot).catch(() => [] as string[]);
  for (const e of entries) {
    if (e.startsWith('.removing-')) await rm(join(instancesRoot, e), { recursive: true, force: true });
    else if (!e.startsWith('.')) {
      // A record write cut short leaves its temp file (see writeRecord) beside record.json.
      for (const f of await readdir(join(instancesRoot, e)).catch(() => [] as string[])) {
        if (f.startsWith(`.tmp-${RECORD_FILE}-`)) await unlink(join(instancesRoot, e, f)).catch(() => undefined);
      }
    }
  }
}
