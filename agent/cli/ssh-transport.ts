// Owns: `--host ssh://user@host[:port]`: an SSH connection (ssh2) to the remote host and, per HTTP
// request, a stream-local forward (openssh's direct-streamlocal) to the remote kilnd socket, like
// `docker -H ssh://`. Authentication from the ssh-agent (SSH_AUTH_SOCK) or ~/.ssh/id_*; the host
// key must be in ~/.ssh/known_hosts or /etc/ssh/ssh_known_hosts (plain or hashed entries).
// Must not: print anything or know commands; it only produces an ApiClient.
import { createHmac } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { connect as tcpConnect, type Socket } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import type { AnyAuthMethod, ClientChannel } from 'ssh2';
import { KilnError } from '../errors.js';
import { ApiClient } from './client.js';

export interface SshHost {
  user: string;
  host: string;
  port: number;
}

export function parseHostUrl(url: string): SshHost {
  const m = /^ssh:\/\/(?:([^@/:]+)@)?(\[[0-9a-fA-F:.]+\]|[^@/:[\]]+)(?::(\d+))?\/?$/.exec(url);
  if (!m) throw new KilnError('KILN_BAD_REQUEST', `--host "${url}" is not ssh://user@host[:port]`, { host: url });
  const port = m[3] ? Number(m[3]) : 22;
  if (port < 1 || port > 65535) throw new KilnError('KILN_BAD_REQUEST', `--host port ${port} is out of range`, { host: url });
  return { user: m[1] ?? process.env.USER ?? 'root', host: m[2]!.replace(/^\[|\]$/g, ''), port };
}

// ------------------------------------------------------------------ known_hosts

function globMatch(pattern: string, text: string): boolean {
  const re = new RegExp('^' + pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$', 'i');
  return re.test(text);
}

function hostPatternMatches(field: string, names: string[]): boolean {
  if (field.startsWith('|1|')) {
    const [, , salt, hash] = field.split('|');
    if (!salt || !hash) return false;
    return names.some((n) => createHmac('sha1', Buffer.from(salt, 'base64')).update(n).digest('base64') === hash);
  }
  let matched = false;
  for (const p of field.split(',')) {
    if (p.startsWith('!')) {
      if (names.some((n) => globMatch(p.slice(1), n))) return false;
    } else if (names.some((n) => globMatch(p, n))) matched = true;
  }
  return matched;
}

export interface KnownHostVerdict {
  ok: boolean;
  reason?: 'unknown' | 'mismatch' | 'revoked';
}

/** Checks a server host key blob against known_hosts text (OpenSSH format). */
export function checkKnownHosts(texts: string[], host: string, port: number, key: Buffer): KnownHostVerdict {
  const names = port === 22 ? [host] : [`[${host}]:${port}`];
  let sawHost = false;
  for (const text of texts) {
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (!line || line.startsWith('#')) continue;
      const parts = line.split(/\s+/);
      let marker: string | undefined;
      if (parts[0]!.startsWith('@')) marker = parts.shift();
      const [hosts, , blob] = parts;
      if (!hosts || !blob || marker === '@cert-authority') continue;
      if (!hostPatternMatches(hosts, names)) continue;
      const same = Buffer.from(blob, 'base64').equals(key);
      if (marker === '@revoked') {
        if (same) return { ok: false, reason: 'revoked' };
        continue;
      }
      sawHost = true;
      if (same) return { ok: true };
    }
  }
  return { ok: false, reason: sawHost ? 'mismatch' : 'unknown' };
}

// ------------------------------------------------------------------ authentication

export function authMethods(user: string, env: NodeJS.ProcessEnv = process.env, home = homedir()): AnyAuthMethod[] {
  const methods: AnyAuthMethod[] = [];
  if (env.SSH_AUTH_SOCK) methods.push({ type: 'agent', username: user, agent: env.SSH_AUTH_SOCK });
  for (const name of ['id_ed25519', 'id_ecdsa', 'id_rsa']) {
    const path = join(home, '.ssh', name);
    if (!existsSync(path)) continue;
    const key = readFileSync(path);
    // An encrypted key needs a passphrase the CLI does not ask for: use the agent for those.
    const parsed = ssh2.utils.parseKey(key);
    if (parsed instanceof Error) continue;
    methods.push({ type: 'publickey', username: user, key });
  }
  return methods;
}

// ------------------------------------------------------------------ the forwarded stream

/**
 * A Duplex the HTTP client can use at once, while the forwarded channel opens in the background:
 * writes wait for the channel, reads come from it.
 */
class ForwardedStream extends Duplex {
  private channel: ClientChannel | undefined;
  private pending: Array<{ chunk: Buffer; cb: (e?: Error | null) => void }> = [];
  private endRequested = false;

  constructor(open: (cb: (err: Error | undefined, ch?: ClientChannel) => void) => void) {
    super();
    open((err, ch) => {
      if (err || !ch) {
        this.destroy(err ?? new Error('forward failed'));
        return;
      }
      this.channel = ch;
      ch.on('data', (d: Buffer) => {
        if (!this.push(d)) ch.pause();
      });
      ch.on('end', () => this.push(null));
      ch.on('error', (e: Error) => this.destroy(e));
      ch.on('close', () => {
        this.push(null);
        this.destroy();
      });
      for (const p of this.pending) ch.write(p.chunk, p.cb);
      this.pending = [];
      if (this.endRequested) ch.end();
    });
  }

  override _read(): void {
    this.channel?.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.channel) this.channel.write(chunk, cb);
    else this.pending.push({ chunk, cb });
  }

  override _final(cb: (e?: Error | null) => void): void {
    if (this.channel) this.channel.end();
    else this.endRequested = true;
    cb();
  }

  override _destroy(err: Error | null, cb: (e: Error | null) => void): void {
    this.channel?.close();
    cb(err);
  }

  // node:http calls these on sockets; a channel has no such knobs.
  setTimeout(): this {
    return this;
  }
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }
}

export interface SshOptions {
  env?: NodeJS.ProcessEnv;
  home?: string;
  readyTimeoutMs?: number;
}

/** Connects to the host over SSH and returns an ApiClient whose requests go to `remoteSocket` there. */
export async function sshClient(url: string, remoteSocket: string, o: SshOptions = {}): Promise<ApiClient> {
  const target = parseHostUrl(url);
  const home = o.home ?? homedir();
  const where = `${url} (${remoteSocket})`;
  const knownTexts = [join(home, '.ssh', 'known_hosts'), '/etc/ssh/ssh_known_hosts'].filter((p) => existsSync(p)).map((p) => readFileSync(p, 'utf8'));
  const methods = authMethods(target.user, o.env ?? process.env, home);
  if (!methods.length) {
    throw new KilnError('KILN_UNAVAILABLE', `cannot reach kilnd at ${where}: no SSH agent (SSH_AUTH_SOCK) and no usable ~/.ssh/id_* key`, { where });
  }
  const tcp: Socket = tcpConnect({ host: target.host, port: target.port });
  const conn = new ssh2.Client();
  let verdict: KnownHostVerdict | undefined;
  await new Promise<void>((resolve, reject) => {
    const fail = (e: Error) => {
      tcp.destroy();
      // A host key kiln refused explains the failure better than ssh2's "verification failed".
      const why = verdict && !verdict.ok
        ? verdict.reason === 'unknown'
          ? `the host key of ${target.host}:${target.port} is not in known_hosts (add it, e.g. ssh-keyscan -p ${target.port} ${target.host} >> ~/.ssh/known_hosts)`
          : `the host key of ${target.host}:${target.port} is ${verdict.reason === 'revoked' ? 'revoked' : 'different from known_hosts (possible man-in-the-middle)'}`
        : e.message;
      reject(new KilnError('KILN_UNAVAILABLE', `cannot reach kilnd at ${where}: ${why}`, { where, reason: verdict && !verdict.ok ? `host-key-${verdict.reason}` : 'ssh' }));
    };
    conn.once('ready', () => {
      conn.off('error', fail);
      resolve();
    });
    conn.once('error', fail);
    conn.connect({
      sock: tcp,
      username: target.user,
      authHandler: methods,
      hostVerifier: (key: Buffer) => {
        verdict = checkKnownHosts(knownTexts, target.host, target.port, key);
        return verdict.ok;
      },
      readyTimeout: o.readyTimeoutMs ?? 20_000,
    });
  });
  // Keep the process alive only while a request is in flight, so the CLI exits when it is done.
  let open = 0;
  tcp.unref();
  conn.on('error', () => undefined);
  const factory = () =>
    new ForwardedStream((cb) => {
      if (open++ === 0) tcp.ref();
      conn.openssh_forwardOutStreamLocal(remoteSocket, (err, ch) => {
        if (err) {
          if (--open === 0) tcp.unref();
          // A plain Error: the client wraps it into KILN_UNAVAILABLE with this message.
          cb(new Error(`the SSH server refused the forward to ${remoteSocket}: ${err.message} (is kilnd running there, and may ${target.user} use its socket?)`));
          return;
        }
        ch.once('close', () => {
          if (--open === 0) tcp.unref();
        });
        cb(undefined, ch);
      });
    });
  return new ApiClient(factory, where);
}
