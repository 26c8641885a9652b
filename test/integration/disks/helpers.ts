// Shared set-up of the disks integration tests: a state dir whose image cache holds real images
// made with qemu-img, loop devices made with losetup, and teardown that undoes each step even
// when the test failed half-way. Programs run through agent/tools/run.ts (argv arrays only).
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../agent/config/load.js';
import { silentLogger } from '../../../agent/log.js';
import { run } from '../../../agent/tools/run.js';
import { QemuImg } from '../../../agent/tools/qemu-img.js';
import { DiskService } from '../../../agent/disks/service.js';
import type { ImageJson } from '../../../agent/api/protocol.js';
import type { KilnConfig } from '../../../agent/config/schema.js';

export const MiB = 1024 ** 2;

export interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

export async function sh(program: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const res = await run(program, args, { timeoutMs, env: { LVM_SUPPRESS_FD_WARNINGS: '1' } });
  return res.stdout;
}

export interface Env {
  root: string;
  state: string;
  config: KilnConfig;
  qemuImg: QemuImg;
  disks: DiskService;
  raw: ImageJson;
  qcow2: ImageJson;
}

/** Data at a few offsets, holes elsewhere: a sparse raw image of `size` bytes. */
export function writePatternedRaw(path: string, size: number): void {
  const fd = openSync(path, 'w', 0o600);
  try {
    const spots: Array<[number, number]> = [[0, MiB], [20 * MiB, 512 * 1024], [size - 4096, 4096]];
    for (const [off, len] of spots) writeSync(fd, randomBytes(len), 0, len, off);
  } finally {
    closeSync(fd);
  }
}

async function cacheImage(state: string, src: string, format: 'raw' | 'qcow2', virtualSize: number, extra: Partial<ImageJson> = {}): Promise<ImageJson> {
  const hex = createHash('sha256').update(readFileSync(src)).digest('hex');
  const dir = join(state, 'images', 'sha256', hex);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, 'disk');
  await sh('mv', [src, path]);
  return { digest: `sha256:${hex}`, format, virtualSize, actualSize: 0, path, sources: [], minDisk: 0, minRam: 0, inUseBy: [], ...extra };
}

/**
 * A state dir with two cached images of `size` virtual bytes and the same contents: raw, and
 * qcow2 with 128 KiB clusters (so overlays can be seen to match the base's cluster size).
 */
export async function setupEnv(t: Teardown, o: { size?: number; flags?: Record<string, unknown> } = {}): Promise<Env> {
  const size = o.size ?? 64 * MiB;
  const root = mkdtempSync(join(tmpdir(), 'kiln-disks-it-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const state = join(root, 'state');
  mkdirSync(join(state, 'images'), { recursive: true, mode: 0o700 });
  const rawSrc = join(root, 'src.raw');
  writePatternedRaw(rawSrc, size);
  const qcowSrc = join(root, 'src.qcow2');
  await sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=131072', rawSrc, qcowSrc]);
  const config = loadConfig({ flags: { stateDir: state, ...o.flags } });
  const qemuImg = QemuImg.fromConfig(config);
  const disks = new DiskService({ qemuImg, config, log: silentLogger() });
  const qcow2 = await cacheImage(state, qcowSrc, 'qcow2', size);
  const raw = await cacheImage(state, rawSrc, 'raw', size);
  return { root, state, config, qemuImg, disks, raw, qcow2 };
}

/** `qemu-img info --backing-chain` as JSON (an array, top first). */
export async function infoChain(path: string, format: string): Promise<Array<Record<string, unknown>>> {
  return JSON.parse(await sh('qemu-img', ['info', '-f', format, '--backing-chain', '--output=json', '-U', path])) as Array<Record<string, unknown>>;
}

/** A loop device over a new sparse file of `size` bytes, detached in teardown. */
export async function loopDevice(t: Teardown, dir: string, size: number, name = 'dev'): Promise<{ dev: string; file: string }> {
  const file = join(dir, `${name}.img`);
  const fd = openSync(file, 'w', 0o600);
  closeSync(fd);
  await sh('truncate', ['-s', String(size), file]);
  const dev = (await sh('losetup', ['--find', '--show', file])).trim();
  t.teardown(async () => {
    await sh('losetup', ['-d', dev]).catch(() => undefined);
  });
  return { dev, file };
}
