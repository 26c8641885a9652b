// Owns: the unix socket file: refusing to steal a live daemon's socket, removing a stale one,
// listening, setting mode and group, and removing it again on shutdown.
// Must not: parse requests.
import { chmodSync, chownSync, lstatSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { connect, type Server } from 'node:net';
import { dirname } from 'node:path';
import { KilnError } from '../errors.js';

/** Resolves true when something accepts connections on the socket path. */
export function socketIsLive(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = connect({ path });
    const done = (live: boolean) => {
      conn.destroy();
      resolve(live);
    };
    conn.setTimeout(timeoutMs, () => done(true));
    conn.once('connect', () => done(true));
    conn.once('error', () => done(false));
  });
}

export function groupId(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  // getgrnam without a native call: /etc/group is the source of truth on a host without NSS extras.
  for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined) return Number(gid);
  }
  throw new KilnError('KILN_CONFIG', `socket group "${group}" does not exist`, { group });
}

export async function listenOnSocket(server: Server, path: string, mode: number, group: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  let exists = false;
  try {
    const st = lstatSync(path);
    if (!st.isSocket()) {
      throw new KilnError('KILN_CONFIG', `${path} exists and is not a socket; refusing to replace it`, { path });
    }
    exists = true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (exists) {
    if (await socketIsLive(path)) {
      throw new KilnError('KILN_LOCKED', `another daemon is serving ${path}`, { socket: path });
    }
    unlinkSync(path);
  }
  // Create the socket with no access for others until mode and group are set.
  const oldUmask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(oldUmask);
  }
  if (group) chownSync(path, -1, groupId(group));
  chmodSync(path, mode);
}

export function removeSocket(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    /* already gone */
  }
}
