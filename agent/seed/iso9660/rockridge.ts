// Owns: the System Use Sharing Protocol (SUSP 1.10) and Rock Ridge (RRIP 1.10, "RRIP_1991A")
// entries kiln writes into primary directory records: SP, RR, PX, TF, NM, CE and ER, and the
// rule that splits a record's entries between the record and a continuation area.
// Must not: choose sectors (the writer hands in the continuation area's location).
import { both32, recordDate } from './encode.js';

function entry(sig: string, payload: Buffer): Buffer {
  const head = Buffer.from([sig.charCodeAt(0), sig.charCodeAt(1), 4 + payload.length, 1]);
  return Buffer.concat([head, payload]);
}

/** SP: marks SUSP use; only in the root's "." record, first entry (SUSP 5.3). */
export function sp(): Buffer {
  return entry('SP', Buffer.from([0xbe, 0xef, 0]));
}

export const RR_PX = 0x01;
export const RR_NM = 0x08;
export const RR_TF = 0x80;

/** RR: which RRIP entries follow (RRIP 1.09 readers, including Linux, look at it). */
export function rr(flags: number): Buffer {
  return entry('RR', Buffer.from([flags]));
}

/** PX: POSIX mode, links, uid, gid; the 36-byte RRIP 1.10 form. */
export function px(mode: number, nlink: number, uid = 0, gid = 0): Buffer {
  return entry('PX', Buffer.concat([both32(mode), both32(nlink), both32(uid), both32(gid)]));
}

/** TF: modification, access and attribute-change times in the 7-byte form. */
export function tf(date: Date): Buffer {
  const d = recordDate(date);
  return entry('TF', Buffer.concat([Buffer.from([0x0e]), d, d, d]));
}

/** NM: the alternate (POSIX) name, UTF-8 bytes; one entry holds up to 250 bytes. */
export function nm(name: Buffer): Buffer {
  if (name.length > 250) throw new RangeError('NM name longer than 250 bytes');
  return entry('NM', Buffer.concat([Buffer.from([0]), name]));
}

export const CE_LENGTH = 28;

/** CE: where the rest of a record's entries continue (SUSP 5.1). */
export function ce(location: number, offset: number, length: number): Buffer {
  return entry('CE', Buffer.concat([both32(location), both32(offset), both32(length)]));
}

const ER_ID = 'RRIP_1991A';
const ER_DESCRIPTOR = 'THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS';
const ER_SOURCE = 'PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.';

/** ER: names the extension in use (RRIP 1.10); Linux and libisofs turn Rock Ridge on when they see it. */
export function er(): Buffer {
  const id = Buffer.from(ER_ID, 'latin1');
  const des = Buffer.from(ER_DESCRIPTOR, 'latin1');
  const src = Buffer.from(ER_SOURCE, 'latin1');
  return entry('ER', Buffer.concat([Buffer.from([id.length, des.length, src.length, 1]), id, des, src]));
}

/**
 * Splits entries between the record (at most `room` bytes) and a continuation area. Entries keep
 * their order; `spill` entries always go to the continuation area. When anything continues, the
 * inline part keeps room for the CE entry the writer appends.
 */
export function splitSystemUse(entries: Buffer[], room: number, spill: Buffer[] = []): { inline: Buffer[]; continued: Buffer[] } {
  const total = entries.reduce((n, e) => n + e.length, 0);
  if (spill.length === 0 && total <= room) return { inline: entries, continued: [] };
  const inline: Buffer[] = [];
  let used = CE_LENGTH;
  let i = 0;
  for (; i < entries.length && used + entries[i]!.length <= room; i++) {
    inline.push(entries[i]!);
    used += entries[i]!.length;
  }
  return { inline, continued: [...entries.slice(i), ...spill] };
}
