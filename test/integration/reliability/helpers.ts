// Shared parts of the reliability tests: a seeded PRNG, images made with the real qemu-img,
// SIGKILL of a real kilnd, and the one consistency check every crash, full-disk and load test
// applies to a state dir (through the real API and the files on disk).
// Must not: fake anything; kilnd is the built daemon (test/integration/api/harness.ts starts it).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { call, type Kilnd } from '../api/harness.js';
import { FaultServer } from '../../fixtures/fault-server.js';

export { call, ndjson, startKilnd, tempDir, KILND, KILN, type Kilnd, type HttpReply } from '../api/harness.js';

/** The shared fault-injecting server (it tolerates clients hanging up mid-body itself). */
export async function startFaultServer(): Promise<FaultServer> {
  return FaultServer.start();
}

/** mulberry32: small, fast, and the same sequence for the same seed on every machine. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of a test: RELIABILITY_SEED overrides the fixed default so a failure can be replayed. */
export function testSeed(fallback: number): number {
  const env = process.env.RELIABILITY_SEED;
  return env && /^\d+$/.test(env) ? Number(env) : fallback;
}

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A qcow2 image made by qemu-img (optionally with `dataMiB` of written, non-zero clusters). */
export function qcow2Bytes(dir: string, name: string, size: string, dataMiB = 0): Buffer {
  const path = join(dir, name);
  const r = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', path, size], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`qemu-img create failed: ${r.stderr}`);
  if (dataMiB > 0) {
    const raw = join(dir, `${name}.raw`);
    const w = spawnSync('sh', ['-c', `head -c ${dataMiB}M /dev/urandom > ${raw} && qemu-img convert -q -f raw -O qcow2 ${raw} ${path} && rm -f ${raw}`], { encoding: 'utf8' });
    if (w.status !== 0) throw new Error(`qemu-img convert failed: ${w.stderr}`);
  }
  return readFileSync(path);
}

/** SIGKILL, and wait for the process to be gone. */
export async function killHard(k: Kilnd): Promise<void> {
  if (k.proc.exitCode !== null || k.proc.signalCode !== null) return;
  const gone = new Promise((r) => k.proc.once('exit', r));
  k.proc.kill('SIGKILL');
  await gone;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const verified = new Set<string>();
const INSTANCE_FILES = new Set(['record.json', 'disk.qcow2', 'disk.raw', 'seed.iso', 'console.log']);

/**
 * Every invariant of a state dir at rest, as a list of violations (empty: consistent):
 * - every cache folder is complete (disk, meta.json, refs), its size as recorded, its content
 *   hashing to its name; tmp/ holds nothing but resumable download pairs (x.part + x.part.json);
 * - the index is the files: GET /v1/images lists exactly the image folders;
 * - every instance is 'ready' with its domain known to libvirt (running or shutoff), its folder
 *   holds only its own files (no half-written record, no part file), its disk and seed exist;
 * - references agree: every holder of an image is an instance using that image, or a standalone
 *   disk that exists; every instance is among its image's holders;
 * - no `.kiln-part-*` disk leftovers in `diskDirs`; nothing in quarantine/.
 */
export async function consistencyProblems(k: Kilnd, o: { diskDirs?: string[]; hash?: boolean } = {}): Promise<string[]> {
  const problems: string[] = [];
  const state = k.stateDir;
  const sha = join(state, 'images', 'sha256');
  const folders = existsSync(sha) ? readdirSync(sha).sort() : [];
  for (const hex of folders) {
    const dir = join(sha, hex);
    const files = readdirSync(dir).sort();
    if (files.join(',') !== 'disk,meta.json,refs') {
      problems.push(`image ${hex.slice(0, 12)}: files ${files.join(',')}`);
      continue;
    }
    const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as { digest: string; actualSize: number };
    if (meta.digest !== `sha256:${hex}`) problems.push(`image ${hex.slice(0, 12)}: meta names ${meta.digest}`);
    if (statSync(join(dir, 'disk')).size !== meta.actualSize) problems.push(`image ${hex.slice(0, 12)}: size differs from meta`);
    if (o.hash !== false) {
      // An image folder is immutable once installed: each one is hashed once per test process.
      const st = statSync(join(dir, 'disk'));
      const key = `${dir}:${st.ino}:${st.size}:${st.mtimeMs}`;
      if (!verified.has(key)) {
        if (sha256(readFileSync(join(dir, 'disk'))) !== hex) problems.push(`image ${hex.slice(0, 12)}: content does not hash to its name`);
        else verified.add(key);
      }
    }
    for (const r of readdirSync(join(dir, 'refs'))) if (r.startsWith('.')) problems.push(`image ${hex.slice(0, 12)}: temp file in refs: ${r}`);
  }
  const tmp = readdirSync(join(state, 'tmp')).sort();
  for (const n of tmp) {
    if (!/^[0-9a-f]{32}\.part(\.json)?$/.test(n)) problems.push(`tmp: unexpected ${n}`);
    else if (n.endsWith('.part') && !tmp.includes(n + '.json')) problems.push(`tmp: ${n} without its state record`);
    else if (n.endsWith('.json') && !tmp.includes(n.slice(0, -5))) problems.push(`tmp: ${n} without its part`);
  }
  const quarantine = readdirSync(join(state, 'quarantine'));
  if (quarantine.length) problems.push(`quarantine: ${quarantine.join(',')}`);

  const imagesReply = await call(k.socket, 'GET', '/v1/images');
  if (imagesReply.status !== 200) return [...problems, `GET /v1/images: ${imagesReply.status} ${imagesReply.text}`];
  const images = imagesReply.json as Array<{ digest: string; path: string; inUseBy: string[] }>;
  const listed = images.map((i) => i.digest.slice('sha256:'.length)).sort();
  if (listed.join(',') !== folders.join(',')) problems.push(`index ${listed.map((h) => h.slice(0, 8)).join(',')} != folders ${folders.map((h) => h.slice(0, 8)).join(',')}`);

  const instReply = await call(k.socket, 'GET', '/v1/instances');
  if (instReply.status !== 200) return [...problems, `GET /v1/instances: ${instReply.status} ${instReply.text}`];
  const instances = instReply.json as Array<{ name: string; phase: string; state: string; image: { digest: string }; disk: { path?: string }; seed: { path: string } }>;
  const dirs = readdirSync(join(state, 'instances')).sort();
  const names = instances.map((i) => i.name).sort();
  if (dirs.join(',') !== names.join(',')) problems.push(`instance folders ${dirs.join(',')} != instances ${names.join(',')}`);
  for (const i of instances) {
    if (i.phase !== 'ready') problems.push(`instance ${i.name}: phase ${i.phase}`);
    if (i.state !== 'running' && i.state !== 'shutoff') problems.push(`instance ${i.name}: libvirt state ${i.state}`);
    const dir = join(state, 'instances', i.name);
    if (existsSync(dir)) for (const f of readdirSync(dir)) if (!INSTANCE_FILES.has(f)) problems.push(`instance ${i.name}: stray file ${f}`);
    if (!i.disk.path || !existsSync(i.disk.path)) problems.push(`instance ${i.name}: disk ${i.disk.path} missing`);
    if (!existsSync(i.seed.path)) problems.push(`instance ${i.name}: seed missing`);
    const img = images.find((x) => x.digest === i.image.digest);
    if (!img) problems.push(`instance ${i.name}: image ${i.image.digest.slice(0, 19)} not cached`);
    else if (!img.inUseBy.includes(i.name)) problems.push(`instance ${i.name}: not among the holders of its image`);
  }
  for (const img of images) {
    for (const h of img.inUseBy) {
      if (h.startsWith('disk:')) {
        if (!existsSync(h.slice(5))) problems.push(`image ${img.digest.slice(7, 19)}: holder ${h} has no disk`);
      } else if (!instances.some((i) => i.name === h && i.image.digest === img.digest)) {
        problems.push(`image ${img.digest.slice(7, 19)}: holder ${h} is no instance of it`);
      }
    }
  }
  for (const d of o.diskDirs ?? []) {
    if (!existsSync(d)) continue;
    for (const f of readdirSync(d)) if (f.startsWith('.kiln-part-')) problems.push(`disk dir: leftover ${f}`);
  }
  return problems;
}
