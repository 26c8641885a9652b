// Owns: one SSH session to a guest with ssh2: connect with kiln's key, check the host key (against
// the known keys, or accept and record it on first use), run one command, collect its output and
// exit status, and close. runOverSsh is the public one-shot form.
// Must not: retry or wait for a guest to come up (wait.ts does), spawn ssh(1) or read files.
import { Client, type ConnectConfig } from 'ssh2';
import { KilnError } from '../errors.js';
import { blobToLine, fingerprint, hostKeyMatches, knownKeys } from './host-key.js';

export interface SshTarget {
  host: string;
  port: number;
  username: string;
  /** OpenSSH (or PEM) private key; kiln's own ed25519 key (AgentKeys). */
  privateKey: Buffer;
  /**
   * The guest's host key(s) as "TYPE BASE64" lines (known_hosts style, newline separated, e.g.
   * every key cloud-init printed on the console). Absent: accept on first use and report it.
   */
  knownHostKey?: string;
}

export interface ExecResult {
  code: number;
  signal?: string;
  stdout: string;
  stderr: string;
  /** The host key the guest presented, "TYPE BASE64". */
  hostKey: string;
}

/** Why a session failed, so the waiting loop can tell "not up yet" from "never will be". */
export type SshFailureKind = 'host-key-mismatch' | 'auth' | 'connect' | 'handshake' | 'timeout' | 'closed' | 'exec';

export class SshFailure extends Error {
  constructor(readonly kind: SshFailureKind, message: string, readonly hostKey?: string) {
    super(message);
    this.name = 'SshFailure';
  }
}

const MAX_CAPTURE = 1024 * 1024;

/**
 * Connects, runs `command`, resolves with its result. Rejects with SshFailure; `timeoutMs` bounds
 * the whole session (connect + command). `signal` aborts it.
 */
export function execOnce(t: SshTarget, command: string, o: { timeoutMs: number; signal?: AbortSignal; connectTimeoutMs?: number }): Promise<ExecResult> {
  return new Promise<ExecResult>((resolve, reject) => {
    const client = new Client();
    const known = t.knownHostKey !== undefined ? knownKeys(t.knownHostKey) : undefined;
    let hostKey = '';
    let hostKeyRejected: string | undefined;
    let settled = false;
    let stdout = '';
    let stderr = '';
    const finish = (err: SshFailure | undefined, result?: ExecResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      client.removeAllListeners('error');
      client.on('error', () => {
        /* late socket errors after we are done are irrelevant */
      });
      client.end();
      if (err) reject(err);
      else resolve(result!);
    };
    const timer = setTimeout(() => finish(new SshFailure('timeout', `ssh session to ${t.host}:${t.port} did not finish within ${o.timeoutMs} ms`, hostKey || undefined)), o.timeoutMs);
    const onAbort = () => finish(new SshFailure('closed', 'ssh session aborted', hostKey || undefined));
    if (o.signal?.aborted) {
      onAbort();
      return;
    }
    o.signal?.addEventListener('abort', onAbort, { once: true });

    client.on('ready', () => {
      client.exec(command, (err, stream) => {
        if (err) {
          finish(new SshFailure('exec', `could not run the command over ssh: ${err.message}`, hostKey));
          return;
        }
        let code: number | null = null;
        let sig: string | undefined;
        stream.on('exit', (c: number | null, s?: string) => {
          code = c;
          if (s) sig = s;
        });
        stream.on('data', (d: Buffer) => {
          if (stdout.length < MAX_CAPTURE) stdout += d.toString('utf8');
        });
        stream.stderr.on('data', (d: Buffer) => {
          if (stderr.length < MAX_CAPTURE) stderr += d.toString('utf8');
        });
        stream.on('close', () => {
          if (code === null && sig === undefined) {
            // The channel closed without an exit status: the connection dropped (guest rebooting).
            finish(new SshFailure('closed', 'the ssh channel closed without an exit status', hostKey));
            return;
          }
          finish(undefined, { code: code ?? 128, ...(sig ? { signal: sig } : {}), stdout, stderr, hostKey });
        });
      });
    });
    client.on('error', (err: Error & { level?: string; code?: string }) => {
      if (hostKeyRejected) {
        finish(new SshFailure('host-key-mismatch', `host key ${hostKeyRejected} of ${t.host}:${t.port} is not the known one`, hostKey));
      } else if (err.level === 'client-authentication') {
        finish(new SshFailure('auth', `ssh authentication as ${t.username} refused: ${err.message}`, hostKey || undefined));
      } else if (err.level === 'client-timeout') {
        finish(new SshFailure('handshake', `ssh handshake timed out: ${err.message}`, hostKey || undefined));
      } else if (err.level === 'client-socket' || err.code) {
        finish(new SshFailure('connect', `cannot connect to ${t.host}:${t.port}: ${err.code ?? err.message}`, hostKey || undefined));
      } else {
        finish(new SshFailure('handshake', `ssh handshake with ${t.host}:${t.port} failed: ${err.message}`, hostKey || undefined));
      }
    });
    client.on('close', () => finish(new SshFailure('closed', `connection to ${t.host}:${t.port} closed`, hostKey || undefined)));

    const config: ConnectConfig = {
      host: t.host,
      port: t.port,
      username: t.username,
      privateKey: t.privateKey,
      readyTimeout: Math.max(1000, Math.min(o.connectTimeoutMs ?? 60_000, o.timeoutMs)),
      // A guest that dies mid-wait is noticed within about 30 s instead of hanging the session.
      keepaliveInterval: 10_000,
      keepaliveCountMax: 3,
      // Only kiln's key: no agent, no password, no keyboard-interactive prompts.
      authHandler: ['publickey'],
      hostVerifier: (blob: Buffer) => {
        hostKey = blobToLine(blob);
        if (known === undefined) return true;
        if (hostKeyMatches(blob, known)) return true;
        hostKeyRejected = fingerprint(blob);
        return false;
      },
    };
    try {
      client.connect(config);
    } catch (err) {
      finish(new SshFailure('connect', `cannot connect to ${t.host}:${t.port}: ${(err as Error).message}`));
    }
  });
}

/**
 * Runs one command on the guest and returns its exit status and output (a non-zero status is a
 * result, not an error). KILN_TIMEOUT when it does not finish in time; KILN_GUEST_FAILED for a
 * host key mismatch; other connection failures are KILN_GUEST_FAILED with details.reason.
 */
export async function runOverSsh(t: SshTarget, command: string, timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execOnce(t, command, { timeoutMs });
    return { code: r.code, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    throw sshFailureToKiln(err, t, command);
  }
}

export function sshFailureToKiln(err: unknown, t: SshTarget, command?: string): KilnError {
  if (!(err instanceof SshFailure)) return new KilnError('KILN_INTERNAL', String((err as Error)?.message ?? err));
  const details = { host: t.host, port: t.port, username: t.username, reason: err.kind, ...(command ? { command } : {}), ...(err.hostKey ? { hostKey: err.hostKey } : {}) };
  if (err.kind === 'timeout') return new KilnError('KILN_TIMEOUT', err.message, details);
  return new KilnError('KILN_GUEST_FAILED', err.message, details);
}
