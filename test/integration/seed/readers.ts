// Test helper: reads an ISO with independent tools (isoinfo from genisoimage, xorriso/libisofs)
// through agent/tools/run.ts, and walks extracted trees. No kiln code reads the ISO here.
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../../agent/tools/run.js';

const T = { timeoutMs: 120_000, maxOutputBytes: 64 * 1024 * 1024 };

export interface ListedFile {
  path: string;
  mode: string;
  size: number;
  dir: boolean;
}

/** `isoinfo [-R|-J] -l`: every entry below the root (., .. dropped), with its full path. */
export async function isoinfoList(iso: string, flag: '' | '-R' | '-J'): Promise<ListedFile[]> {
  const args = [...(flag ? [flag] : []), '-l', '-i', iso];
  const { stdout } = await run('isoinfo', args, T);
  const out: ListedFile[] = [];
  let dir = '/';
  for (const line of stdout.split('\n')) {
    const head = /^Directory listing of (.*)$/.exec(line);
    if (head) {
      dir = head[1]!;
      continue;
    }
    const m = /^([-dlrwxsStT]{10})\s+\d+\s+\d+\s+\d+\s+(\d+)\s+\w{3}\s+\d+\s+\d{4}\s+\[\s*\d+\s+\d+\]\s\s(.*?) ?$/.exec(line);
    if (!m) continue;
    const name = m[3]!;
    if (name === '.' || name === '..') continue;
    out.push({ path: (dir + name).replace(/^\//, ''), mode: m[1]!, size: Number(m[2]), dir: m[1]!.startsWith('d') });
  }
  return out;
}

export async function isoinfoDescribe(iso: string): Promise<string> {
  return (await run('isoinfo', ['-d', '-i', iso], T)).stdout;
}

/** `isoinfo -R|-J -x /path`: the file's bytes as text (callers use it for UTF-8 files). */
export async function isoinfoExtract(iso: string, flag: '-R' | '-J', path: string): Promise<string> {
  return (await run('isoinfo', [flag, '-x', `/${path}`, '-i', iso], T)).stdout;
}

export async function xorrisoPvd(iso: string): Promise<string> {
  const r = await run('xorriso', ['-indev', iso, '-pvd_info'], T);
  return r.stdout + r.stderr;
}

/** `xorriso -find / -type f -exec lsdl`: paths of files, as libisofs loads the tree. */
export async function xorrisoFind(iso: string, joliet = false): Promise<string[]> {
  const args = ['-local_charset', 'UTF-8', ...(joliet ? ['-read_fs', 'norock'] : []), '-indev', iso, '-find', '/', '-type', 'f', '-exec', 'lsdl', '--'];
  const { stdout } = await run('xorriso', args, T);
  return stdout.split('\n').map((l) => /'\/(.*)'$/.exec(l)?.[1]).filter((p): p is string => p !== undefined);
}

/** `xorriso -osirrox on -extract / DIR`: the Rock Ridge tree (or Joliet's with joliet=true). */
export async function xorrisoExtract(iso: string, dir: string, joliet = false): Promise<void> {
  const args = ['-local_charset', 'UTF-8', ...(joliet ? ['-read_fs', 'norock'] : []), '-osirrox', 'on', '-indev', iso, '-extract', '/', dir];
  await run('xorriso', args, T);
}

/** Files under a folder: relative path -> { data, mode bits }. */
export function walk(root: string): Map<string, { data: Buffer; mode: number }> {
  const out = new Map<string, { data: Buffer; mode: number }>();
  const visit = (rel: string) => {
    for (const name of readdirSync(join(root, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(root, r));
      if (st.isDirectory()) visit(r);
      else out.set(r, { data: readFileSync(join(root, r)), mode: st.mode & 0o7777 });
    }
  };
  visit('');
  return out;
}

/** "-r--r--r--" for 0o444 and so on. */
export function modeString(mode: number, dir = false): string {
  const bits = 'rwxrwxrwx';
  let s = dir ? 'd' : '-';
  for (let i = 0; i < 9; i++) s += mode & (1 << (8 - i)) ? bits[i] : '-';
  return s;
}
