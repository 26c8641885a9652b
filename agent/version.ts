// Owns: kiln's version string, read once from package.json (build/agent/ -> ../../package.json).
import { readFileSync } from 'node:fs';

let cached: string | undefined;

export function kilnVersion(): string {
  if (cached) return cached;
  try {
    const url = new URL('../../package.json', import.meta.url);
    cached = (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
  } catch {
    cached = '0.0.0-unknown';
  }
  return cached;
}
