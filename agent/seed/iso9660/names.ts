// Owns: which names an ISO image can hold and how each one is spelled in the three namespaces:
// Rock Ridge (the name as given, UTF-8), Joliet (UCS-2, case preserved) and the primary ISO9660
// level-1 hierarchy (8.3 d-characters, made unique per folder, deterministically).
// Must not: lay out sectors or throw anything but KILN_BAD_REQUEST.
import { KilnError } from '../../errors.js';

/** Joliet holds names of up to 64 UCS-2 characters. */
export const MAX_NAME_CHARS = 64;
/** ECMA-119 6.8.2.1 limits a hierarchy to 8 levels, the root being level 1. */
export const MAX_DEPTH = 8;
/** Whole path length kept well inside the 255 bytes ECMA-119 allows and Windows' 240. */
export const MAX_PATH_CHARS = 240;

// Joliet forbids these besides control characters; NUL and '/' are impossible in a POSIX name anyway.
const JOLIET_FORBIDDEN = new Set(['*', '/', ':', ';', '?', '\\']);

function bad(path: string, reason: string): KilnError {
  return new KilnError('KILN_BAD_REQUEST', `ISO9660/Joliet cannot hold the name "${path}": ${reason}`, { path, reason });
}

/** Splits and checks a file path ("openstack/latest/meta_data.json"); throws KILN_BAD_REQUEST. */
export function splitIsoPath(path: string): string[] {
  if (typeof path !== 'string' || path.length === 0) throw bad(String(path), 'the path is empty');
  if (path.startsWith('/')) throw bad(path, 'the path must be relative to the ISO root');
  if (path.length > MAX_PATH_CHARS) throw bad(path, `the path is longer than ${MAX_PATH_CHARS} characters`);
  const parts = path.split('/');
  if (parts.length > MAX_DEPTH) throw bad(path, `the path is deeper than ${MAX_DEPTH} levels`);
  for (const part of parts) checkComponent(path, part);
  return parts;
}

function checkComponent(path: string, name: string): void {
  if (name.length === 0) throw bad(path, 'a path component is empty');
  if (name === '.' || name === '..') throw bad(path, `"${name}" is not a file name`);
  if (name.length > MAX_NAME_CHARS) throw bad(path, `"${name}" is longer than ${MAX_NAME_CHARS} characters (Joliet's limit)`);
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) throw bad(path, `"${JSON.stringify(name)}" contains a control character`);
    if (c >= 0xd800 && c <= 0xdfff) throw bad(path, `"${name}" has a character outside the Basic Multilingual Plane (Joliet is UCS-2)`);
    if (c === 0xfffe || c === 0xffff) throw bad(path, `"${name}" contains a non-character`);
    const ch = name[i]!;
    if (JOLIET_FORBIDDEN.has(ch)) throw bad(path, `"${name}" contains "${ch}", which Joliet forbids`);
  }
}

/** The volume label: up to 32 characters of a conservative set (cloud-init looks for cidata/config-2). */
export function checkVolumeLabel(label: string): void {
  if (typeof label !== 'string' || !/^[A-Za-z0-9_.-][A-Za-z0-9_. -]{0,31}$/.test(label)) {
    throw new KilnError('KILN_BAD_REQUEST',
      `volume label "${String(label)}" must be 1-32 characters of letters, digits, "_", ".", "-" or spaces`,
      { label, reason: 'invalid volume label' });
  }
}

const D_CHAR = /[A-Z0-9_]/;

function dChars(text: string): string {
  let out = '';
  for (const ch of text.toUpperCase()) out += D_CHAR.test(ch) ? ch : '_';
  return out;
}

/**
 * Level-1 identifiers for one folder's children, in the order given (the caller passes them
 * sorted, so the result is deterministic). Files become "NAME.EXT;1" (name <= 8, ext <= 3),
 * folders "NAME" (<= 8); clashes get a "~N" tail, as other mastering tools do.
 */
export function primaryNames(children: ReadonlyArray<{ name: string; dir: boolean }>): string[] {
  const used = new Set<string>();
  const out: string[] = [];
  for (const child of children) {
    let base: string;
    let ext = '';
    if (child.dir) {
      base = dChars(child.name);
    } else {
      const dot = child.name.lastIndexOf('.');
      base = dChars(dot > 0 ? child.name.slice(0, dot) : child.name);
      ext = dot > 0 ? dChars(child.name.slice(dot + 1)).slice(0, 3) : '';
    }
    if (base.length === 0) base = '_';
    const spell = (b: string) => (child.dir ? b : `${b}.${ext};1`);
    let candidate = spell(base.slice(0, 8));
    for (let n = 1; used.has(candidate); n++) {
      const tail = `~${n}`;
      candidate = spell(base.slice(0, 8 - tail.length) + tail);
    }
    used.add(candidate);
    out.push(candidate);
  }
  return out;
}

function padCompare(a: string, b: string): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = i < a.length ? a.charCodeAt(i) : 0x20;
    const y = i < b.length ? b.charCodeAt(i) : 0x20;
    if (x !== y) return x - y;
  }
  return 0;
}

/** ECMA-119 9.3 order of primary identifiers: name, then extension, each padded with spaces. */
export function comparePrimary(a: string, b: string): number {
  const split = (id: string) => {
    const bare = id.replace(/;\d+$/, '');
    const dot = bare.indexOf('.');
    return dot < 0 ? [bare, ''] : [bare.slice(0, dot), bare.slice(dot + 1)];
  };
  const [an, ae] = split(a);
  const [bn, be] = split(b);
  return padCompare(an!, bn!) || padCompare(ae!, be!);
}

/** Joliet order: by UCS-2 code units (what libisofs and genisoimage do). */
export function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
