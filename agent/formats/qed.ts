// Owns: recognising QED images. QED is never accepted (deprecated in qemu, and a format kiln does
// not boot); the header is read only to report its size and backing file. Must not: accept.
import type { BoundedReader } from './source.js';
import { backingKind } from './backing.js';
import { reason, type FormatReport } from './types.js';
import { hasBytes, printable, u32le, u64le } from './bytes.js';

export function probeQed(head: Buffer): boolean {
  return hasBytes(head, 0, Buffer.from([0x51, 0x45, 0x44, 0x00]));
}

export async function parseQed(r: BoundedReader, head: Buffer): Promise<FormatReport> {
  const rep: FormatReport = { format: 'qed', virtualSize: u64le(head, 48), reasons: [], details: {} };
  rep.reasons.push(reason('qed.format', 'QED images are never accepted'));
  const clusterSize = u32le(head, 4);
  const boff = u32le(head, 56);
  const bsize = u32le(head, 60);
  if (boff && bsize && bsize <= 1023 && clusterSize && boff + bsize <= clusterSize) {
    const name = (await r.read(boff, bsize)).toString('latin1');
    rep.backing = { name, kind: backingKind(name) };
    rep.reasons.push(reason('qed.backing_file', `backing file "${printable(Buffer.from(name, 'latin1'))}"`));
  }
  return rep;
}
