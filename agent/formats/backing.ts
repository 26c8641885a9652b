// Owns: classifying a backing/data file name found in an image header (absolute, relative,
// json: pseudo-protocol, other protocol). Must not: resolve or open the name.
import type { BackingKind } from './types.js';

export function backingKind(name: string): BackingKind {
  if (name.startsWith('json:')) return 'json';
  if (name.startsWith('/')) return 'absolute';
  // qemu reads "proto:rest" as a protocol when the colon comes before any slash.
  const colon = name.indexOf(':');
  const slash = name.indexOf('/');
  if (colon > 0 && (slash < 0 || colon < slash)) return 'protocol';
  return 'relative';
}
