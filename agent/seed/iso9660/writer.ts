// Owns: turning a list of files into one ISO9660 image: the primary hierarchy (level-1 names)
// with Rock Ridge, the Joliet hierarchy, both path tables of each, volume descriptors and file
// data, laid out deterministically (sorted entries, one timestamp, no randomness) in memory.
// Must not: know what a seed contains (nocloud.ts/configdrive.ts do), touch the filesystem or
// spawn programs; invalid input is KILN_BAD_REQUEST with details.reason, never a broken image.
import { KilnError } from '../../errors.js';
import { SECTOR, asciiField, both16, both32, recordDate, sectorsFor, ucs2Field, ucs2be, volumeDate } from './encode.js';
import { checkVolumeLabel, compareCodeUnits, comparePrimary, primaryNames, splitIsoPath } from './names.js';
import { RR_NM, RR_PX, RR_TF, ce, CE_LENGTH, er, nm, px, rr, sp, splitSystemUse, tf } from './rockridge.js';

export interface IsoFileInput {
  /** Relative path with "/" separators; folders are created as needed. */
  path: string;
  data: Buffer | Uint8Array;
  /** Permission bits for Rock Ridge (default 0444, read-only as the guest should see a seed). */
  mode?: number;
}

export interface IsoOptions {
  volumeLabel: string;
  files: IsoFileInput[];
  /** Every date in the image (descriptors, records, Rock Ridge TF): the instance's creation time. */
  timestamp: Date;
  /** Files larger than this are refused (KILN_BAD_REQUEST); the hard limit is one 32-bit extent. */
  maxFileBytes?: number;
}

const DEFAULT_FILE_MODE = 0o444;
const DIR_MODE = 0o555;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const MAX_EXTENT_BYTES = 0xffffffff - SECTOR;
const SYSTEM_ID = 'LINUX';
const APPLICATION_ID = 'KILN';

interface FileNode {
  kind: 'file';
  name: string;
  data: Buffer;
  mode: number;
  extent: number;
}

interface DirNode {
  kind: 'dir';
  name: string;
  parent: DirNode | null;
  children: Map<string, DirNode | FileNode>;
  primary: HierarchyInfo;
  joliet: HierarchyInfo;
}

/** Where one folder sits in one hierarchy (primary or Joliet). */
interface HierarchyInfo {
  number: number;
  extent: number;
  size: number;
  records: Rec[];
}

interface Area {
  bytes: Buffer;
  sector: number;
  offset: number;
}

/** One directory record before extents are known: what it points at and its system use. */
interface Rec {
  id: Buffer;
  target: DirNode | FileNode;
  su: Buffer[];
  area?: Area;
  length: number;
  offset: number;
}

function bad(reason: string, details: Record<string, unknown> = {}): KilnError {
  return new KilnError('KILN_BAD_REQUEST', reason, { reason, ...details });
}

function newDir(name: string, parent: DirNode | null): DirNode {
  const info = (): HierarchyInfo => ({ number: 0, extent: 0, size: 0, records: [] });
  return { kind: 'dir', name, parent, children: new Map(), primary: info(), joliet: info() };
}

function checkTimestamp(date: Date): void {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) throw bad('the ISO timestamp is not a valid date');
  const year = date.getUTCFullYear();
  if (year < 1970 || year > 2155) throw bad(`the ISO timestamp's year ${year} is outside 1970..2155`);
}

function buildTree(files: IsoFileInput[], maxFileBytes: number): DirNode {
  const root = newDir('', null);
  for (const file of files) {
    const parts = splitIsoPath(file.path);
    if (!(file.data instanceof Uint8Array)) throw bad(`the data of "${file.path}" is not bytes`, { path: file.path });
    const data = Buffer.isBuffer(file.data) ? file.data : Buffer.from(file.data.buffer, file.data.byteOffset, file.data.byteLength);
    if (data.length > maxFileBytes) {
      throw bad(`"${file.path}" is ${data.length} bytes, over the cap of ${maxFileBytes} bytes per seed file`, {
        path: file.path, bytes: data.length, maxFileBytes,
      });
    }
    const mode = file.mode ?? DEFAULT_FILE_MODE;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw bad(`the mode of "${file.path}" must be permission bits (0..07777)`, { path: file.path });
    let dir = root;
    for (const [i, part] of parts.entries()) {
      const last = i === parts.length - 1;
      const existing = dir.children.get(part);
      if (last) {
        if (existing) throw bad(`"${file.path}" is given twice, or is also a folder`, { path: file.path });
        dir.children.set(part, { kind: 'file', name: part, data, mode, extent: 0 });
      } else if (existing === undefined) {
        const sub = newDir(part, dir);
        dir.children.set(part, sub);
        dir = sub;
      } else if (existing.kind === 'file') {
        throw bad(`"${file.path}" needs "${parts.slice(0, i + 1).join('/')}" to be a folder, but it is a file`, { path: file.path });
      } else {
        dir = existing;
      }
    }
  }
  return root;
}

/** Children in a stable order (by UTF-16 code units of the name), the input to name mangling. */
function sortedChildren(dir: DirNode): Array<DirNode | FileNode> {
  return [...dir.children.values()].sort((a, b) => compareCodeUnits(a.name, b.name));
}

function subdirCount(dir: DirNode): number {
  let n = 0;
  for (const c of dir.children.values()) if (c.kind === 'dir') n++;
  return n;
}

function recordLength(idLength: number, suLength: number): number {
  const fixed = 33 + idLength + (idLength % 2 === 0 ? 1 : 0);
  const total = fixed + suLength;
  return total + (total % 2);
}

/** Places records in sectors (a record never crosses a sector boundary) and returns the size. */
function placeRecords(records: Rec[]): number {
  let offset = 0;
  for (const rec of records) {
    if ((offset % SECTOR) + rec.length > SECTOR) offset = sectorsFor(offset) * SECTOR;
    rec.offset = offset;
    offset += rec.length;
  }
  return sectorsFor(offset) * SECTOR;
}

/** Continuation areas, packed into sectors; an area never crosses a sector boundary. */
class AreaPacker {
  readonly areas: Area[] = [];
  private sector = 0;
  private offset = 0;
  add(bytes: Buffer): Area {
    if (this.offset + bytes.length > SECTOR) {
      this.sector++;
      this.offset = 0;
    }
    const area = { bytes, sector: this.sector, offset: this.offset };
    this.offset += bytes.length;
    this.areas.push(area);
    return area;
  }
  get sectors(): number {
    return this.areas.length === 0 ? 0 : this.sector + 1;
  }
}

function makeRec(id: Buffer, target: DirNode | FileNode, entries: Buffer[], spill: Buffer[], packer: AreaPacker | null): Rec {
  const room = 254 - recordLength(id.length, 0);
  const { inline, continued } = splitSystemUse(entries, room, spill);
  let area: Area | undefined;
  if (continued.length > 0) {
    if (!packer) throw new Error('continuation area needed without a packer');
    area = packer.add(Buffer.concat(continued));
  }
  const suLength = inline.reduce((n, e) => n + e.length, 0) + (area ? CE_LENGTH : 0);
  const rec: Rec = { id, target, su: inline, length: recordLength(id.length, suLength), offset: 0 };
  if (area) rec.area = area;
  return rec;
}

function dirMode(): number {
  return S_IFDIR | DIR_MODE;
}

/** Primary hierarchy records of one folder, Rock Ridge included. */
function primaryRecords(dir: DirNode, ids: Map<DirNode | FileNode, string>, date: Date, packer: AreaPacker): Rec[] {
  const parent = dir.parent ?? dir;
  const selfEntries = [rr(RR_PX | RR_TF), px(dirMode(), 2 + subdirCount(dir)), tf(date)];
  const records: Rec[] = [];
  if (dir.parent === null) records.push(makeRec(Buffer.from([0]), dir, [sp(), ...selfEntries], [er()], packer));
  else records.push(makeRec(Buffer.from([0]), dir, selfEntries, [], packer));
  records.push(makeRec(Buffer.from([1]), parent, [rr(RR_PX | RR_TF), px(dirMode(), 2 + subdirCount(parent)), tf(date)], [], packer));
  const named = sortedChildren(dir).map((child) => ({ child, id: ids.get(child)! })).sort((a, b) => comparePrimary(a.id, b.id));
  for (const { child, id } of named) {
    const mode = child.kind === 'dir' ? dirMode() : S_IFREG | child.mode;
    const nlink = child.kind === 'dir' ? 2 + subdirCount(child) : 1;
    const entries = [rr(RR_PX | RR_TF | RR_NM), px(mode, nlink), tf(date), nm(Buffer.from(child.name, 'utf8'))];
    records.push(makeRec(Buffer.from(id, 'latin1'), child, entries, [], packer));
  }
  return records;
}

/** Joliet hierarchy records of one folder: UCS-2 names, no system use. */
function jolietRecords(dir: DirNode): Rec[] {
  const records: Rec[] = [
    { id: Buffer.from([0]), target: dir, su: [], length: recordLength(1, 0), offset: 0 },
    { id: Buffer.from([1]), target: dir.parent ?? dir, su: [], length: recordLength(1, 0), offset: 0 },
  ];
  // Joliet names carry no ";1" version suffix, as genisoimage (and so cloud-localds) writes them.
  for (const child of sortedChildren(dir)) {
    const id = ucs2be(child.name);
    records.push({ id, target: child, su: [], length: recordLength(id.length, 0), offset: 0 });
  }
  return records;
}

/** Breadth-first folder order with each folder's subfolders sorted by identifier: path table order. */
function bfs(root: DirNode, order: (dir: DirNode) => DirNode[]): DirNode[] {
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...order(out[i]!));
  return out;
}

function pathTable(dirs: DirNode[], which: 'primary' | 'joliet', idOf: (d: DirNode) => Buffer, bigEndian: boolean): Buffer {
  const parts: Buffer[] = [];
  for (const dir of dirs) {
    const id = dir.parent === null ? Buffer.from([0]) : idOf(dir);
    const rec = Buffer.alloc(8 + id.length + (id.length % 2));
    rec[0] = id.length;
    rec[1] = 0;
    const info = dir[which];
    const parentNumber = (dir.parent ?? dir)[which].number;
    if (bigEndian) {
      rec.writeUInt32BE(info.extent, 2);
      rec.writeUInt16BE(parentNumber, 6);
    } else {
      rec.writeUInt32LE(info.extent, 2);
      rec.writeUInt16LE(parentNumber, 6);
    }
    id.copy(rec, 8);
    parts.push(rec);
  }
  return Buffer.concat(parts);
}

function extentOf(target: DirNode | FileNode, which: 'primary' | 'joliet'): { extent: number; size: number; dir: boolean } {
  if (target.kind === 'file') return { extent: target.extent, size: target.data.length, dir: false };
  return { extent: target[which].extent, size: target[which].size, dir: true };
}

function directoryRecord(id: Buffer, where: { extent: number; size: number; dir: boolean }, date: Buffer, su: Buffer[], length: number): Buffer {
  const rec = Buffer.alloc(length);
  rec[0] = length;
  rec[1] = 0;
  both32(where.extent).copy(rec, 2);
  both32(where.size).copy(rec, 10);
  date.copy(rec, 18);
  rec[25] = where.dir ? 0x02 : 0x00;
  rec[26] = 0;
  rec[27] = 0;
  both16(1).copy(rec, 28);
  rec[32] = id.length;
  id.copy(rec, 33);
  let at = 33 + id.length + (id.length % 2 === 0 ? 1 : 0);
  for (const e of su) {
    e.copy(rec, at);
    at += e.length;
  }
  return rec;
}

interface DescriptorInput {
  type: 1 | 2;
  label: string;
  totalSectors: number;
  pathTableSize: number;
  lPath: number;
  mPath: number;
  root: DirNode;
  date: Date;
}

function volumeDescriptor(o: DescriptorInput): Buffer {
  const b = Buffer.alloc(SECTOR);
  const joliet = o.type === 2;
  const text = (s: string, width: number) => (joliet ? ucs2Field(s, width) : asciiField(s, width));
  b[0] = o.type;
  b.write('CD001', 1, 'latin1');
  b[6] = 1;
  text(SYSTEM_ID, 32).copy(b, 8);
  text(o.label, 32).copy(b, 40);
  both32(o.totalSectors).copy(b, 80);
  // Joliet's escape sequence "%/E": UCS-2 level 3.
  if (joliet) Buffer.from([0x25, 0x2f, 0x45]).copy(b, 88);
  both16(1).copy(b, 120);
  both16(1).copy(b, 124);
  both16(SECTOR).copy(b, 128);
  both32(o.pathTableSize).copy(b, 132);
  b.writeUInt32LE(o.lPath, 140);
  b.writeUInt32BE(o.mPath, 148);
  const which = joliet ? 'joliet' : 'primary';
  directoryRecord(Buffer.from([0]), { extent: o.root[which].extent, size: o.root[which].size, dir: true }, recordDate(o.date), [], 34).copy(b, 156);
  text('', 128).copy(b, 190); // volume set
  text('', 128).copy(b, 318); // publisher
  text('', 128).copy(b, 446); // data preparer
  text(APPLICATION_ID, 128).copy(b, 574);
  text('', 37).copy(b, 702); // copyright file
  text('', 37).copy(b, 739); // abstract file
  text('', 37).copy(b, 776); // bibliographic file
  volumeDate(o.date).copy(b, 813); // creation
  volumeDate(o.date).copy(b, 830); // modification
  volumeDate(null).copy(b, 847); // expiration: never
  volumeDate(o.date).copy(b, 864); // effective
  b[881] = 1;
  return b;
}

function terminator(): Buffer {
  const b = Buffer.alloc(SECTOR);
  b[0] = 255;
  b.write('CD001', 1, 'latin1');
  b[6] = 1;
  return b;
}

/** Builds the whole ISO image in memory. Same inputs, same bytes. */
export function writeIso9660(o: IsoOptions): Buffer {
  checkVolumeLabel(o.volumeLabel);
  checkTimestamp(o.timestamp);
  if (!Array.isArray(o.files)) throw bad('the ISO file list is not an array');
  const maxFileBytes = Math.min(o.maxFileBytes ?? MAX_EXTENT_BYTES, MAX_EXTENT_BYTES);
  const root = buildTree(o.files, maxFileBytes);
  const date = o.timestamp;
  const recDate = recordDate(date);

  // Folder orders of both hierarchies (they differ: primary ids are mangled, Joliet ids are not).
  const primaryIds = new Map<DirNode | FileNode, string>();
  const assignPrimaryIds = (dir: DirNode) => {
    const children = sortedChildren(dir);
    const ids = primaryNames(children.map((c) => ({ name: c.name, dir: c.kind === 'dir' })));
    children.forEach((c, i) => primaryIds.set(c, ids[i]!));
    for (const c of children) if (c.kind === 'dir') assignPrimaryIds(c);
  };
  assignPrimaryIds(root);
  const subdirs = (dir: DirNode) => [...dir.children.values()].filter((c): c is DirNode => c.kind === 'dir');
  const primaryDirs = bfs(root, (d) => subdirs(d).sort((a, b) => comparePrimary(primaryIds.get(a)!, primaryIds.get(b)!)));
  const jolietDirs = bfs(root, (d) => subdirs(d).sort((a, b) => compareCodeUnits(a.name, b.name)));
  primaryDirs.forEach((d, i) => (d.primary.number = i + 1));
  jolietDirs.forEach((d, i) => (d.joliet.number = i + 1));

  // Records and sizes (independent of extents), then extents.
  const packer = new AreaPacker();
  for (const dir of primaryDirs) {
    dir.primary.records = primaryRecords(dir, primaryIds, date, packer);
    dir.primary.size = placeRecords(dir.primary.records);
  }
  for (const dir of jolietDirs) {
    dir.joliet.records = jolietRecords(dir);
    dir.joliet.size = placeRecords(dir.joliet.records);
  }
  const primaryPathSize = pathTable(primaryDirs, 'primary', (d) => Buffer.from(primaryIds.get(d)!, 'latin1'), false).length;
  const jolietPathSize = pathTable(jolietDirs, 'joliet', (d) => ucs2be(d.name), false).length;

  let lba = 19; // 16 system sectors, PVD, Joliet SVD, terminator
  const pL = lba; lba += sectorsFor(primaryPathSize);
  const pM = lba; lba += sectorsFor(primaryPathSize);
  const jL = lba; lba += sectorsFor(jolietPathSize);
  const jM = lba; lba += sectorsFor(jolietPathSize);
  for (const dir of primaryDirs) {
    dir.primary.extent = lba;
    lba += dir.primary.size / SECTOR;
  }
  const areaBase = lba;
  lba += packer.sectors;
  for (const dir of jolietDirs) {
    dir.joliet.extent = lba;
    lba += dir.joliet.size / SECTOR;
  }
  const files: FileNode[] = [];
  for (const dir of primaryDirs) for (const c of sortedChildren(dir)) if (c.kind === 'file') files.push(c);
  for (const file of files) {
    // An empty file has no data; its extent is 0, as the length says there is nothing to read.
    file.extent = file.data.length === 0 ? 0 : lba;
    lba += sectorsFor(file.data.length);
  }
  const totalSectors = lba;

  const image = Buffer.alloc(totalSectors * SECTOR);
  volumeDescriptor({ type: 1, label: o.volumeLabel, totalSectors, pathTableSize: primaryPathSize, lPath: pL, mPath: pM, root, date }).copy(image, 16 * SECTOR);
  volumeDescriptor({ type: 2, label: o.volumeLabel, totalSectors, pathTableSize: jolietPathSize, lPath: jL, mPath: jM, root, date }).copy(image, 17 * SECTOR);
  terminator().copy(image, 18 * SECTOR);
  pathTable(primaryDirs, 'primary', (d) => Buffer.from(primaryIds.get(d)!, 'latin1'), false).copy(image, pL * SECTOR);
  pathTable(primaryDirs, 'primary', (d) => Buffer.from(primaryIds.get(d)!, 'latin1'), true).copy(image, pM * SECTOR);
  pathTable(jolietDirs, 'joliet', (d) => ucs2be(d.name), false).copy(image, jL * SECTOR);
  pathTable(jolietDirs, 'joliet', (d) => ucs2be(d.name), true).copy(image, jM * SECTOR);
  for (const which of ['primary', 'joliet'] as const) {
    for (const dir of which === 'primary' ? primaryDirs : jolietDirs) {
      const base = dir[which].extent * SECTOR;
      for (const rec of dir[which].records) {
        const su = rec.area ? [...rec.su, ce(areaBase + rec.area.sector, rec.area.offset, rec.area.bytes.length)] : rec.su;
        directoryRecord(rec.id, extentOf(rec.target, which), recDate, su, rec.length).copy(image, base + rec.offset);
      }
    }
  }
  for (const area of packer.areas) area.bytes.copy(image, (areaBase + area.sector) * SECTOR + area.offset);
  for (const file of files) if (file.data.length > 0) file.data.copy(image, file.extent * SECTOR);
  return image;
}
