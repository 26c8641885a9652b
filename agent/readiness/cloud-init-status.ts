// Owns: reading the answer of `cloud-init status --wait --long` (text and exit status) into a
// verdict: done, error (with cloud-init's own detail), still running, or "no cloud-init here".
// Must not: run anything (pure); wait.ts runs the command and decides about retries.
//
// Why --long: it adds `detail:` (the datasource on success, the failing module on error) and, on
// cloud-init >= 23.4, `errors:` / `recoverable_errors:`. Exit statuses: 0 done, 1 error, 2 done
// with recoverable errors ("degraded done", 23.4+); 127 means the command is missing.

export type CloudInitVerdict =
  | { kind: 'done'; status: string; detail: string }
  | { kind: 'error'; status: string; detail: string }
  | { kind: 'pending'; status: string; detail: string }
  | { kind: 'missing'; detail: string };

export const CLOUD_INIT_STATUS_COMMAND = 'cloud-init status --wait --long';

/** Drops the progress dots --wait prints and trims: what is left is cloud-init's report. */
export function cleanStatusOutput(stdout: string): string {
  return stdout
    .replace(/\r/g, '')
    .split('\n')
    .map((l) => l.replace(/^\.+/, ''))
    .filter((l) => l.trim() !== '')
    .join('\n')
    .trim();
}

export function parseCloudInitStatus(stdout: string, stderr: string, exitCode: number | null): CloudInitVerdict {
  const text = cleanStatusOutput(stdout);
  const m = /^status:\s*(.+?)\s*$/m.exec(text);
  if (!m) {
    if (exitCode === 127 || /cloud-init: (command )?not found|No such file or directory/.test(stderr)) {
      return { kind: 'missing', detail: (stderr.trim() || 'cloud-init is not installed in the guest').slice(-2000) };
    }
    // No status line at all (killed, odd output): not a verdict yet.
    return { kind: 'pending', status: 'unknown', detail: (text + '\n' + stderr).trim().slice(-2000) };
  }
  const status = m[1]!.toLowerCase();
  const detail = text.slice(-4000);
  // "extended_status: degraded done" (23.4+) is still done: the guest came up, with warnings.
  if (status === 'done') return { kind: 'done', status, detail };
  if (status === 'error' || status === 'disabled') return { kind: 'error', status, detail: status === 'disabled' && !/detail:/.test(text) ? `${detail}\ncloud-init is disabled in the guest` : detail };
  // running / not started (e.g. --wait interrupted): ask again.
  return { kind: 'pending', status, detail };
}
