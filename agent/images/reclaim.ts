// Owns: giving back the memory of socket buffers a download has finished with. Every body chunk
// is a fresh 64 KiB buffer outside the V8 heap; V8 only collects their wrappers after ~64 MiB of
// such garbage has piled up, which alone would push kilnd's RSS past its budget while fetching.
// A young-generation collection every few MiB keeps the garbage (and so the RSS) flat; it costs
// about a millisecond each.
// Must not: run a full (major) collection, or be called on paths other than a streaming download.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type GcFn = (o: { type: 'minor' | 'major'; execution: 'sync' | 'async' }) => void;

let gc: GcFn | null | undefined;

function load(): GcFn | null {
  if (gc !== undefined) return gc;
  try {
    // --expose-gc after start-up only affects contexts created later: a fresh one hands us gc().
    setFlagsFromString('--expose-gc');
    const fn = runInNewContext('gc') as unknown;
    gc = typeof fn === 'function' ? (fn as GcFn) : null;
  } catch {
    gc = null;
  }
  return gc;
}

/** Collects young garbage (the consumed chunks); a no-op where the runtime does not allow it. */
export function reclaimChunks(): void {
  load()?.({ type: 'minor', execution: 'sync' });
}
