// Unit tests of DiskService's decisions (argv, modes, cleanup) with a stub qemu-img runner.
// The real qemu-img, loop devices and LVM are exercised in test/integration/disks/.
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../agent/config/load.js';
import { KilnError } from '../../../agent/errors.js';
import { silentLogger } from '../../../agent/log.js';
import { QemuImg } from '../../../agent/tools/qemu-img.js';
import type { Runner, RunOptions } from '../../../agent/tools/run.js';
import type { ImageJson } from '../../../agent/api/protocol.js';
import { DiskService, qemuFormatOf } from '../../../agent/disks/service.js';

const MiB = 1024 ** 2;
const HEX = 'b'.repeat(64);

interface Call { args: readonly string[]; options: RunOptions }

/** stub-qemu-img: records argv, answers `info` from a table keyed by path prefix, fails on demand. */
function stubRunner(answers: (args: readonly string[]) => unknown, fail?: (args: readonly string[]) => boolean): { runner: Runner; calls: Call[] } {
  const calls: Call[] = [];
  const runner: Runner = async (program, args, options) => {
    calls.push({ args, options });
    if (program !== 'qemu-img') throw new Error(`unexpected program ${program}`);
    if (fail?.(args)) throw new KilnError('KILN_TOOL_FAILED', 'qemu-img exited with status 1', { exitCode: 1, stderrTail: 'stub failure' });
    const answer = answers(args);
    return { stdout: answer === undefined ? '' : JSON.stringify(answer), stderr: '', exitCode: 0, durationMs: 1 };
  };
  return { runner, calls };
}

function setup(t: { teardown(fn: () => void): void }, o: { baseFormat?: string; baseCluster?: number; virtualSize?: number; flatFormat?: string; directIo?: boolean; fail?: (a: readonly string[]) => boolean; baseInfo?: Record<string, unknown> } = {}) {
  const root = mkdtempSync(join(tmpdir(), 'kiln-disks-unit-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const state = join(root, 'state');
  const baseDir = join(state, 'images', 'sha256', HEX);
  mkdirSync(baseDir, { recursive: true, mode: 0o700 });
  const basePath = join(baseDir, 'disk');
  writeFileSync(basePath, 'stub base');
  const virtualSize = o.virtualSize ?? 64 * MiB;
  const baseFormat = o.baseFormat ?? 'qcow2';
  const config = loadConfig({ flags: { stateDir: state, flatFormat: o.flatFormat ?? 'qcow2' } });
  let resized: number | undefined;
  const { runner, calls } = stubRunner((args) => {
    const sub = args[0];
    const path = args[args.length - 1]!;
    if (sub === 'info' && path === basePath) {
      return { format: baseFormat, 'virtual-size': virtualSize, 'actual-size': 1000, ...(baseFormat === 'qcow2' ? { 'cluster-size': o.baseCluster ?? 65536 } : {}), ...o.baseInfo };
    }
    if (sub === 'info') {
      const fmt = args[args.indexOf('-f') + 1];
      const create = calls.find((c) => c.args[0] === 'create');
      if (create) {
        const size = Number(create.args[create.args.length - 1]);
        return { format: 'qcow2', 'virtual-size': size, 'backing-filename': basePath, 'full-backing-filename': basePath, 'backing-filename-format': baseFormat };
      }
      return { format: fmt, 'virtual-size': resized ?? virtualSize };
    }
    if (sub === 'resize') resized = Number(args[args.length - 1]);
    return undefined;
  }, o.fail);
  const qemuImg = new QemuImg({ addressSpaceBytes: 2 ** 31, cpuSeconds: 30, inspectTimeoutMs: 60_000, convertTimeoutMs: 60_000 }, runner);
  const disks = new DiskService({ qemuImg, config, log: silentLogger(), directIoProbe: () => o.directIo ?? true });
  const image: ImageJson = { digest: `sha256:${HEX}`, format: baseFormat, virtualSize, actualSize: 1000, path: basePath, sources: [], minDisk: 0, minRam: 0, inUseBy: [] };
  return { root, state, basePath, image, disks, calls };
}

t.test('overlay: qcow2 on the absolute base, backing format pinned, cluster size matched, private file', async (t) => {
  const s = setup(t, { baseCluster: 2 * MiB });
  const target = join(s.root, 'vm', 'sub', 'disk.qcow2');
  const disk = await s.disks.create({ target, image: s.image, sizeBytes: 128 * MiB, mode: 'overlay' });
  t.same(disk, { path: target, format: 'qcow2', virtualSize: 128 * MiB, mode: 'overlay' });
  const create = s.calls.find((c) => c.args[0] === 'create')!;
  t.ok(create, 'qemu-img create ran');
  const a = create.args;
  t.equal(a[a.indexOf('-b') + 1], s.basePath, 'backing path is the absolute cached base');
  t.equal(a[a.indexOf('-F') + 1], 'qcow2', 'backing format pinned');
  t.equal(a[a.indexOf('-o') + 1], `cluster_size=${2 * MiB}`, 'cluster size of the base');
  t.equal(a[a.length - 1], String(128 * MiB));
  t.equal(s.calls[0]!.args[0], 'info', 'the base is inspected before use');
  t.equal(statSync(target).mode & 0o777, 0o600, 'disk file 0600');
  t.equal(statSync(join(s.root, 'vm')).mode & 0o777, 0o700, 'new folders 0700');
  t.equal(statSync(join(s.root, 'vm', 'sub')).mode & 0o777, 0o700);
  t.same(readdirSync(join(s.root, 'vm', 'sub')), ['disk.qcow2'], 'no part file left');
});

t.test('overlay on a raw base: backing format raw, qemu default clusters', async (t) => {
  const s = setup(t, { baseFormat: 'raw' });
  await s.disks.create({ target: join(s.root, 'd.qcow2'), image: s.image, mode: 'overlay' });
  const a = s.calls.find((c) => c.args[0] === 'create')!.args;
  t.equal(a[a.indexOf('-F') + 1], 'raw');
  t.notOk(a.includes('-o'), 'no cluster_size option');
  t.equal(a[a.length - 1], String(64 * MiB), 'no size asked: the image size');
});

t.test('flat: convert with -W and -t none where O_DIRECT works, then grown', async (t) => {
  const s = setup(t, { flatFormat: 'raw', directIo: true });
  const target = join(s.root, 'flat.raw');
  const disk = await s.disks.create({ target, image: s.image, sizeBytes: 100 * MiB, mode: 'flat' });
  t.same(disk, { path: target, format: 'raw', virtualSize: 100 * MiB, mode: 'flat' });
  const conv = s.calls.find((c) => c.args[0] === 'convert')!.args;
  t.same(conv.slice(0, 5), ['convert', '-f', 'qcow2', '-O', 'raw']);
  t.ok(conv.includes('-W'), '-W');
  t.equal(conv[conv.indexOf('-t') + 1], 'none');
  t.notOk(conv.includes('-n'), 'a fresh file, not -n');
  t.notOk(conv.includes('-S'), 'sparse detection kept');
  const resize = s.calls.find((c) => c.args[0] === 'resize')!.args;
  t.same(resize.slice(-1), [String(100 * MiB)], 'grown to the asked size');
  t.equal(statSync(target).mode & 0o777, 0o600);
});

t.test('flat: writeback where O_DIRECT does not work; no resize when sizes match', async (t) => {
  const s = setup(t, { flatFormat: 'qcow2', directIo: false });
  await s.disks.create({ target: join(s.root, 'flat.qcow2'), image: s.image, mode: 'flat' });
  const conv = s.calls.find((c) => c.args[0] === 'convert')!.args;
  t.equal(conv[conv.indexOf('-t') + 1], 'writeback');
  t.equal(conv[conv.indexOf('-O') + 1], 'qcow2', 'the configured flat format');
  t.notOk(s.calls.some((c) => c.args[0] === 'resize'));
});

t.test('a failed convert leaves nothing behind: no part file, no folders kiln made', async (t) => {
  const s = setup(t, { fail: (a) => a[0] === 'convert' });
  const target = join(s.root, 'new', 'flat.qcow2');
  await t.rejects(s.disks.create({ target, image: s.image, mode: 'flat' }), { code: 'KILN_QEMU_IMG' });
  t.notOk(existsSync(join(s.root, 'new')), 'the folder it created is gone');
  t.same(readdirSync(s.root).sort(), ['state']);
});

t.test('an existing target is never overwritten', async (t) => {
  const s = setup(t);
  const target = join(s.root, 'taken.qcow2');
  writeFileSync(target, 'precious');
  await t.rejects(s.disks.create({ target, image: s.image, mode: 'overlay' }), { code: 'KILN_CONFLICT' });
  t.same(readdirSync(s.root).sort(), ['state', 'taken.qcow2'], 'no part file left');
});

t.test('size policy runs before any qemu-img call', async (t) => {
  const s = setup(t, { virtualSize: 64 * MiB });
  await t.rejects(s.disks.create({ target: join(s.root, 'x.qcow2'), image: { ...s.image, minDisk: 256 * MiB }, sizeBytes: 128 * MiB, mode: 'overlay' }),
    { code: 'KILN_DISK_TOO_SMALL', details: { requiredBytes: 256 * MiB, requestedBytes: 128 * MiB } });
  await t.rejects(s.disks.create({ target: join(s.root, 'x.qcow2'), image: { ...s.image, minRam: 512 * MiB }, mode: 'flat', memoryBytes: 256 * MiB }),
    { code: 'KILN_MEMORY_TOO_SMALL', details: { requiredBytes: 512 * MiB, requestedBytes: 256 * MiB } });
  t.equal(s.calls.length, 0);
});

t.test('the base is re-inspected: outside the cache, changed size, backing file', async (t) => {
  const s = setup(t);
  const stray = join(s.root, 'stray.qcow2');
  writeFileSync(stray, 'x');
  await t.rejects(s.disks.create({ target: join(s.root, 'a.qcow2'), image: { ...s.image, path: stray }, mode: 'overlay' }), { code: 'KILN_IMAGE_UNSAFE' });
  await t.rejects(s.disks.create({ target: join(s.root, 'a.qcow2'), image: { ...s.image, virtualSize: 32 * MiB }, mode: 'overlay' }),
    { code: 'KILN_IMAGE_UNSAFE', details: { reasons: [/virtual size/] } });
  const b = setup(t, { baseInfo: { 'backing-filename': '/etc/shadow' } });
  await t.rejects(b.disks.create({ target: join(b.root, 'a.qcow2'), image: b.image, mode: 'overlay' }), { code: 'KILN_IMAGE_UNSAFE', details: { reasons: [/backing file/] } });
  t.notOk(existsSync(join(s.root, 'a.qcow2')));
});

t.test('targets: absolute files only, nothing under /dev or inside the cache for file modes', async (t) => {
  const s = setup(t);
  await t.rejects(s.disks.create({ target: 'rel/disk.qcow2', image: s.image, mode: 'overlay' }), { code: 'KILN_BAD_REQUEST' });
  await t.rejects(s.disks.create({ target: '/dev/loop7', image: s.image, mode: 'flat' }), { code: 'KILN_BAD_REQUEST', message: /volume/ });
  await t.rejects(s.disks.create({ target: join(s.state, 'images', 'x.qcow2'), image: s.image, mode: 'overlay' }), { code: 'KILN_BAD_REQUEST', message: /cache/ });
  await t.rejects(s.disks.create({ target: join(s.root, 'a'), image: s.image, mode: 'bogus' as never }), { code: 'KILN_BAD_REQUEST' });
});

t.test('volume: refuses what is not a block device, after checking the base', async (t) => {
  const s = setup(t);
  await t.rejects(s.disks.create({ target: join(s.root, 'not-a-device'), image: s.image, mode: 'volume' }), { code: 'KILN_NOT_FOUND' });
});

t.test('remove: files go, devices and the cache are never touched', async (t) => {
  const s = setup(t);
  const f = join(s.root, 'gone.qcow2');
  writeFileSync(f, 'x');
  await s.disks.remove({ path: f, format: 'qcow2', virtualSize: 1, mode: 'overlay' });
  t.notOk(existsSync(f));
  await s.disks.remove({ path: f, format: 'qcow2', virtualSize: 1, mode: 'overlay' });
  t.pass('removing twice is fine');
  await s.disks.remove({ device: '/dev/loop0', format: 'raw', virtualSize: 1, mode: 'volume' });
  t.equal(s.calls.length, 0, 'nothing run for a device');
  await t.rejects(s.disks.remove({ path: s.basePath, format: 'qcow2', virtualSize: 1, mode: 'flat' }), { code: 'KILN_BAD_REQUEST' });
  t.ok(existsSync(s.basePath), 'the base survives');
});

t.test('formats map to what qemu-img reads', async (t) => {
  t.equal(qemuFormatOf('iso'), 'raw');
  t.equal(qemuFormatOf('gpt'), 'raw');
  t.equal(qemuFormatOf('vhd'), 'vpc');
  t.equal(qemuFormatOf('vmdk'), 'vmdk');
  t.throws(() => qemuFormatOf('qed'), { code: 'KILN_FORMAT_NOT_ALLOWED' });
});
