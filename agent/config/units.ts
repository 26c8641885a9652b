// Owns: parsing and printing human sizes (512M, 20G, 1T) and durations (500ms, 30s, 5m, 2h).
// Must not: throw anything but KilnError('KILN_BAD_REQUEST').
import { KilnError } from '../errors.js';

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4,
};

/** Parses `512M`, `20G`, `1T`, `1.5G` or plain bytes. Binary units: M = MiB, as qemu-img does. */
export function parseSize(input: string | number, what = 'size'): number {
  if (typeof input === 'number') {
    if (Number.isSafeInteger(input) && input >= 0) return input;
    throw new KilnError('KILN_BAD_REQUEST', `${what} must be a non-negative whole number of bytes, got ${input}`, { field: what });
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(input);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new KilnError('KILN_BAD_REQUEST', `${what} "${input}" is not a size (examples: 512M, 20G, 1T, 1048576)`, { field: what, value: input });
  }
  const bytes = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes)) throw new KilnError('KILN_BAD_REQUEST', `${what} "${input}" is too large`, { field: what, value: input });
  return bytes;
}

export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return i === 0 ? `${bytes} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[i]}`;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, '': 1 };

/** Parses `500ms`, `30s`, `5m`, `2h`, `7d` or plain milliseconds into milliseconds. */
export function parseDuration(input: string | number, what = 'duration'): number {
  if (typeof input === 'number') {
    if (Number.isFinite(input) && input >= 0) return Math.round(input);
    throw new KilnError('KILN_BAD_REQUEST', `${what} must be a non-negative number of milliseconds`, { field: what });
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|)\s*$/.exec(input);
  if (!m) throw new KilnError('KILN_BAD_REQUEST', `${what} "${input}" is not a duration (examples: 500ms, 30s, 5m, 2h, 7d)`, { field: what, value: input });
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]!]!);
}
