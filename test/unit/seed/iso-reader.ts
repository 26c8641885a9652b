// Test helper: a small ISO9660 reader (PVD + Rock Ridge, Joliet SVD) written from ECMA-119 and
// SUSP/RRIP for unit and property tests. The integration tests use isoinfo and xorriso instead.
export interface ReadEntry {
  data: Buffer;
  mode?: number;
  isoName: string;
}

export interface ReadIso {
  label: string;
  jolietLabel: string;
  volumeSectors: number;
  /** Rock Ridge names -> file (primary hierarchy). */
  rock: Map<string, ReadEntry>;
  /** Joliet names -> file. */
  joliet: Map<string, ReadEntry>;
  rockDirs: Map<string, number>;
}

const SECTOR = 2048;

function both32(b: Buffer, at: number): number {
  const le = b.readUInt32LE(at);
  const be = b.readUInt32BE(at + 4);
  if (le !== be) throw new Error(`both-endian mismatch at ${at}: ${le} vs ${be}`);
  return le;
}

interface Rec {
  extent: number;
  size: number;
  dir: boolean;
  id: Buffer;
  su: Buffer;
}

function records(iso: Buffer, extent: number, size: number): Rec[] {
  const out: Rec[] = [];
  let at = extent * SECTOR;
  const end = at + size;
  while (at < end) {
    const len = iso[at]!;
    if (len === 0) {
      at = (Math.floor(at / SECTOR) + 1) * SECTOR;
      continue;
    }
    const idLen = iso[at + 32]!;
    const id = iso.subarray(at + 33, at + 33 + idLen);
    const suStart = at + 33 + idLen + (idLen % 2 === 0 ? 1 : 0);
    out.push({ extent: both32(iso, at + 2), size: both32(iso, at + 10), dir: (iso[at + 25]! & 2) !== 0, id, su: iso.subarray(suStart, at + len) });
    if (Math.floor(at / SECTOR) !== Math.floor((at + len - 1) / SECTOR)) throw new Error('record crosses a sector boundary');
    at += len;
  }
  return out;
}

function susp(iso: Buffer, su: Buffer): Map<string, Buffer[]> {
  const out = new Map<string, Buffer[]>();
  let area: Buffer | null = su;
  while (area) {
    let next: Buffer | null = null;
    let at = 0;
    while (at + 4 <= area.length) {
      const sig = area.subarray(at, at + 2).toString('latin1');
      const len = area[at + 2]!;
      if (len < 4) break;
      const e = area.subarray(at, at + len);
      if (sig === 'CE') {
        const loc = both32(e, 4);
        const off = both32(e, 12);
        const l = both32(e, 20);
        next = iso.subarray(loc * SECTOR + off, loc * SECTOR + off + l);
      } else {
        out.set(sig, [...(out.get(sig) ?? []), e]);
      }
      at += len;
    }
    area = next;
  }
  return out;
}

export function readIso(iso: Buffer): ReadIso {
  const pvd = iso.subarray(16 * SECTOR, 17 * SECTOR);
  if (pvd[0] !== 1 || pvd.subarray(1, 6).toString('latin1') !== 'CD001') throw new Error('no PVD');
  const svd = iso.subarray(17 * SECTOR, 18 * SECTOR);
  if (svd[0] !== 2 || svd.subarray(88, 91).toString('latin1') !== '%/E') throw new Error('no Joliet SVD');
  const term = iso.subarray(18 * SECTOR, 19 * SECTOR);
  if (term[0] !== 255) throw new Error('no terminator');
  const label = pvd.subarray(40, 72).toString('latin1').trimEnd();
  let jolietLabel = '';
  for (let i = 40; i < 72; i += 2) jolietLabel += String.fromCharCode(svd.readUInt16BE(i));
  const volumeSectors = both32(pvd, 80);
  const rock = new Map<string, ReadEntry>();
  const rockDirs = new Map<string, number>();
  const joliet = new Map<string, ReadEntry>();

  const walkRock = (extent: number, size: number, prefix: string) => {
    for (const r of records(iso, extent, size)) {
      if (r.id.length === 1 && r.id[0]! <= 1) continue;
      const entries = susp(iso, r.su);
      const nm = entries.get('NM');
      if (!nm) throw new Error(`no NM for ${r.id.toString('latin1')}`);
      const name = Buffer.concat(nm.map((e) => e.subarray(5))).toString('utf8');
      const pxEntry = entries.get('PX')?.[0];
      const mode = pxEntry ? both32(pxEntry, 4) : undefined;
      const path = prefix ? `${prefix}/${name}` : name;
      if (r.dir) {
        rockDirs.set(path, mode ?? -1);
        walkRock(r.extent, r.size, path);
      } else {
        const entry: ReadEntry = { data: Buffer.from(iso.subarray(r.extent * SECTOR, r.extent * SECTOR + r.size)), isoName: r.id.toString('latin1') };
        if (mode !== undefined) entry.mode = mode;
        rock.set(path, entry);
      }
    }
  };
  const walkJoliet = (extent: number, size: number, prefix: string) => {
    for (const r of records(iso, extent, size)) {
      if (r.id.length === 1 && r.id[0]! <= 1) continue;
      let name = '';
      for (let i = 0; i < r.id.length; i += 2) name += String.fromCharCode(r.id.readUInt16BE(i));
      const path = prefix ? `${prefix}/${name}` : name;
      if (r.dir) walkJoliet(r.extent, r.size, path);
      else joliet.set(path, { data: Buffer.from(iso.subarray(r.extent * SECTOR, r.extent * SECTOR + r.size)), isoName: name });
    }
  };
  walkRock(both32(pvd, 156 + 2), both32(pvd, 156 + 10), '');
  walkJoliet(both32(svd, 156 + 2), both32(svd, 156 + 10), '');
  return { label, jolietLabel: jolietLabel.trimEnd(), volumeSectors, rock, joliet, rockDirs };
}
