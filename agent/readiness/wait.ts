// Owns: `--wait ssh`: keep trying to reach the guest over SSH with kiln's key until
// `cloud-init status --wait --long` answers, then report done, error (KILN_GUEST_FAILED with
// cloud-init's detail) or, when the deadline passes, KILN_TIMEOUT with the last failure and the
// console tail attached.
// Must not: find the guest's address (instances/ passes host and port), read the console itself
// (the caller's consoleTail does), or spawn ssh(1).
import { KilnError } from '../errors.js';
import type { Logger } from '../log.js';
import { CLOUD_INIT_STATUS_COMMAND, parseCloudInitStatus } from './cloud-init-status.js';
import { execOnce, SshFailure, type SshTarget } from './ssh.js';

export interface WaitOptions {
  timeoutMs: number;
  log: Logger;
  /** The last few KiB of the guest's serial console, attached to timeouts and failures. */
  consoleTail?: () => Promise<string>;
  signal?: AbortSignal;
  /** Pause between attempts while the guest is not reachable yet (default 2 s). */
  retryMs?: number;
}

export interface CloudInitDone {
  status: 'done';
  /** cloud-init's report (status, time, detail: the datasource). */
  detail: string;
  /** The guest's host key, "TYPE BASE64": the known one, or the one accepted on first use. */
  hostKey: string;
  /** The user that logged in: the one asked for, or the image's default user root was sent to. */
  username: string;
}

// cloud-init's disable_root (the default) answers a root login with this and exit 142; the
// keys kiln injected sit with the image's default user, whose name the message gives.
const LOGIN_AS_OTHER_USER = /Please login as the user "([a-z_][a-z0-9_-]{0,31})" rather than the user "root"/;

const CONSOLE_TAIL_CHARS = 4000;

export async function waitForCloudInit(t: SshTarget, o: WaitOptions): Promise<CloudInitDone> {
  const log = o.log.child({ component: 'readiness' });
  const started = Date.now();
  const deadline = started + o.timeoutMs;
  const retryMs = o.retryMs ?? 2000;
  let attempts = 0;
  let lastError = 'no attempt yet';
  let lastKind: string | undefined;
  // After the first successful login the host key is pinned for the rest of the wait: a guest
  // that answers with another key later is not the one we talked to.
  let pinned = t.knownHostKey;
  let username = t.username;

  const tail = async (): Promise<string> => {
    if (!o.consoleTail) return '';
    try {
      return (await o.consoleTail()).slice(-CONSOLE_TAIL_CHARS);
    } catch {
      return '';
    }
  };

  log.info({ host: t.host, port: t.port, username: t.username, timeoutMs: o.timeoutMs, knownHostKey: pinned !== undefined }, 'waiting for cloud-init over ssh');
  for (;;) {
    if (o.signal?.aborted) throw new KilnError('KILN_TIMEOUT', 'waiting for the guest was cancelled', { host: t.host, port: t.port, cancelled: true });
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    attempts++;
    try {
      const r = await execOnce({ ...t, username, ...(pinned !== undefined ? { knownHostKey: pinned } : {}) }, CLOUD_INIT_STATUS_COMMAND, {
        timeoutMs: remaining,
        connectTimeoutMs: Math.min(60_000, remaining),
        ...(o.signal ? { signal: o.signal } : {}),
      });
      pinned ??= r.hostKey;
      const redirect = username === 'root' ? LOGIN_AS_OTHER_USER.exec(r.stdout + r.stderr) : null;
      if (redirect) {
        log.info({ from: username, to: redirect[1] }, 'the guest sends root to its default user; logging in as that user');
        username = redirect[1]!;
        continue;
      }
      const verdict = parseCloudInitStatus(r.stdout, r.stderr, r.code);
      const elapsedMs = Date.now() - started;
      if (verdict.kind === 'done') {
        log.info({ host: t.host, port: t.port, elapsedMs, attempts, detail: verdict.detail }, 'cloud-init done');
        return { status: 'done', detail: verdict.detail, hostKey: r.hostKey, username };
      }
      if (verdict.kind === 'error' || verdict.kind === 'missing') {
        const consoleTail = await tail();
        log.warn({ host: t.host, port: t.port, elapsedMs, status: verdict.kind === 'error' ? verdict.status : 'missing', detail: verdict.detail }, 'cloud-init failed');
        throw new KilnError(
          'KILN_GUEST_FAILED',
          verdict.kind === 'missing' ? 'the guest has no cloud-init' : `cloud-init finished with status ${verdict.status}`,
          { reason: verdict.kind === 'missing' ? 'cloud-init-missing' : 'cloud-init-error', status: verdict.kind === 'error' ? verdict.status : null,
            detail: verdict.detail, exitCode: r.code, host: t.host, port: t.port, elapsedMs, consoleTail },
        );
      }
      lastKind = 'pending';
      lastError = `cloud-init status ${verdict.status}`;
      log.debug({ attempts, status: verdict.status }, 'cloud-init not finished yet');
    } catch (err) {
      if (!(err instanceof SshFailure)) throw err;
      if (err.kind === 'host-key-mismatch') {
        const consoleTail = await tail();
        throw new KilnError('KILN_GUEST_FAILED', err.message, {
          reason: 'host-key-mismatch', host: t.host, port: t.port, presentedHostKey: err.hostKey ?? null, consoleTail,
        });
      }
      // Not up yet, sshd not started, keys not installed yet, connection dropped by a reboot:
      // all expected while a guest boots. Retry until the deadline.
      if (err.kind !== lastKind || attempts % 10 === 1) log.debug({ attempts, kind: err.kind, err: err.message }, 'guest not reachable yet');
      if (err.kind === 'timeout' && lastKind !== undefined && Date.now() >= deadline) {
        // The attempt cut short by the deadline says less than the failures before it.
        lastError = `${lastError}; the last attempt was cut off by the deadline`;
      } else {
        lastKind = err.kind;
        lastError = err.message;
      }
    }
    const pause = Math.min(retryMs, deadline - Date.now());
    if (pause > 0) await sleep(pause, o.signal);
  }
  const consoleTail = await tail();
  log.warn({ host: t.host, port: t.port, attempts, lastError }, 'guest not ready in time');
  throw new KilnError('KILN_TIMEOUT', `the guest at ${t.host}:${t.port} was not ready within ${o.timeoutMs} ms (${lastError})`, {
    host: t.host, port: t.port, timeoutMs: o.timeoutMs, attempts, lastError, lastFailure: lastKind ?? null, consoleTail,
  });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
