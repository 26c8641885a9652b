// tools/qemu-img.ts against the real qemu-img: every subcommand, the limits really applied
// (a tiny address space makes it fail as KILN_QEMU_IMG), and file names qemu-img would read as
// a protocol (json:...) staying plain files because the wrapper passes absolute paths.
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QemuImg, type QemuImgLimits } from '../../../agent/tools/qemu-img.js';
import { run, type RunOptions, type Runner } from '../../../agent/tools/run.js';

const MiB = 1024 * 1024;
const dir = await mkdtemp(join(tmpdir(), 'kiln-qemu-img-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const limits: QemuImgLimits = { addressSpaceBytes: 2 * 1024 ** 3, cpuSeconds: 30, inspectTimeoutMs: 60_000, convertTimeoutMs: 600_000 };
const seen: Array<{ args: readonly string[]; options: RunOptions }> = [];
const recording: Runner = (program, args, options) => {
  seen.push({ args, options });
  return run(program, args, options);
};
const q = new QemuImg(limits, recording);

t.test('create, info, check, resize, measure, convert, compare on real images', async (t) => {
  const a = join(dir, 'a.qcow2');
  await q.create(a, { format: 'qcow2', size: 1024 * MiB, clusterSize: 128 * 1024 });
  let info = await q.info(a, 'qcow2');
  t.match(info, { format: 'qcow2', virtualSize: 1024 * MiB, clusterSize: 128 * 1024 });
  t.equal(info.backingFilename, undefined);
  t.same(await q.check(a, 'qcow2').then((c) => [c.corruptions, c.leaks]), [0, 0]);
  await q.resize(a, 'qcow2', 2048 * MiB);
  info = await q.info(a, 'qcow2');
  t.equal(info.virtualSize, 2048 * MiB);

  const raw = join(dir, 'src.raw');
  await writeFile(raw, Buffer.alloc(4 * MiB, 0x42));
  const m = await q.measure(raw, 'raw', 'qcow2');
  t.ok(m.required >= 4 * MiB && m.fullyAllocated >= m.required, `measure ${JSON.stringify(m)}`);
  const c = join(dir, 'c.qcow2');
  await q.convert({ src: raw, srcFormat: 'raw', dst: c, dstFormat: 'qcow2', compress: true, targetOptions: { compat: '0.10' } });
  const ci = await q.info(c, 'qcow2');
  t.equal((ci.raw as { 'format-specific': { data: { compat: string } } })['format-specific'].data.compat, '0.10');
  t.equal(await q.compare(raw, 'raw', c, 'qcow2'), true, 'same contents');
  const other = join(dir, 'other.raw');
  await writeFile(other, Buffer.alloc(4 * MiB, 0x43));
  t.equal(await q.compare(raw, 'raw', other, 'raw'), false, 'different contents');

  const overlay = join(dir, 'overlay.qcow2');
  await q.create(overlay, { format: 'qcow2', backing: { path: c, format: 'qcow2' } });
  const oi = await q.info(overlay, 'qcow2');
  t.equal(oi.backingFilename, c);
  t.equal(oi.backingFormat, 'qcow2');
  t.equal(oi.virtualSize, 4 * MiB, 'size taken from the backing file');

  const convertCall = seen.find((s) => s.args[0] === 'convert')!;
  t.equal(convertCall.options.niceness, 10, 'convert ran under nice');
  const infoCall = seen.find((s) => s.args[0] === 'info')!;
  t.same(infoCall.options.limits, { addressSpaceBytes: limits.addressSpaceBytes, cpuSeconds: 30 }, 'info ran under prlimit');
  for (const s of seen) t.ok(s.args.includes('-f'), `${s.args[0]} has -f`);
});

t.test('a file named like a json: protocol is read as a plain file', async (t) => {
  // null-co is a 1 GiB device of zeros when qemu-img reads the name as json: (commas are refused
  // by the wrapper anyway: qemu-img would read them as option separators in -b values).
  const name = 'json:{"driver":"null-co"}';
  await writeFile(join(dir, name), Buffer.alloc(MiB, 1));
  const cwd = process.cwd();
  process.chdir(dir);
  t.teardown(() => process.chdir(cwd));
  const info = await q.info(name, 'raw');
  t.equal(info.virtualSize, MiB, 'the 1 MiB file, not a 1 GiB null device');
  t.equal(info.format, 'raw');
});

t.test('limits are enforced: a tiny address space makes qemu-img fail as KILN_QEMU_IMG', async (t) => {
  const a = join(dir, 'small.qcow2');
  await q.create(a, { format: 'qcow2', size: MiB });
  const starved = new QemuImg({ ...limits, addressSpaceBytes: 16 * MiB }, run);
  const err = await starved.info(a, 'qcow2').catch((e: unknown) => e);
  t.match(err, { code: 'KILN_QEMU_IMG', details: { subcommand: 'info' } });
  await t.rejects(q.info(join(dir, 'absent.qcow2'), 'qcow2'), { code: 'KILN_QEMU_IMG', details: { subcommand: 'info', exitCode: 1 } });
  await t.rejects(q.info(join(dir, 'small.qcow2'), 'vmdk'), { code: 'KILN_QEMU_IMG' }, 'the wrong explicit format is refused, never probed');
});
