// Owns: the vocabulary of the image format inspector: formats, reasons, per-format reports and
// the inspection result. Must not: contain parsing logic or import anything with side effects.

export type KilnFormat = 'raw' | 'qcow2' | 'vmdk' | 'iso' | 'vhd' | 'vhdx' | 'vdi' | 'luks' | 'qed' | 'gpt' | 'mbr';

export const KILN_FORMATS: readonly KilnFormat[] = Object.freeze(['raw', 'qcow2', 'vmdk', 'iso', 'vhd', 'vhdx', 'vdi', 'luks', 'qed', 'gpt', 'mbr']);

/**
 * Why an image is unsafe. `code` is stable (tests and callers match on it, e.g.
 * 'qcow2.backing_file'); `message` is for people and carries the offending value.
 */
export interface Reason {
  code: string;
  message: string;
}

export type BackingKind = 'absolute' | 'relative' | 'json' | 'protocol' | 'unreadable';

export interface BackingRef {
  name: string;
  kind: BackingKind;
  format?: string;
}

/** What one format's parser found. */
export interface FormatReport {
  format: KilnFormat;
  /** Guest-visible size in bytes; undefined when the header is too short to tell. */
  virtualSize: number | undefined;
  reasons: Reason[];
  backing?: BackingRef;
  dataFile?: string;
  /** Format-specific facts (version, subformat, cluster size ...), for display and tests. */
  details: Record<string, unknown>;
}

export interface InspectOptions {
  /** Images with a larger virtual size are unsafe (reason 'virtual_size'). */
  maxVirtualSize?: number;
  /** Total bytes the inspector may read from the source; beyond it the image is unsafe. */
  maxReadBytes?: number;
}

export interface InspectResult {
  /** The format the image is, after the harmless-hybrid rules (iso+mbr is 'iso'). */
  format: KilnFormat;
  /** Every format whose signature matched at its canonical offset. */
  matches: KilnFormat[];
  /** Guest-visible size in bytes (the file size for raw, iso, gpt, mbr). */
  virtualSize: number;
  /** Bytes of the file or stream, when known. */
  size: number | undefined;
  backing?: BackingRef;
  dataFile?: string;
  details: Record<string, unknown>;
  reasons: Reason[];
  safe: boolean;
  /** Bytes the inspector read from the source (bounded by maxReadBytes). */
  bytesRead: number;
}

export const reason = (code: string, message: string): Reason => ({ code, message });

export function formatReason(r: Reason): string {
  return `${r.code}: ${r.message}`;
}
