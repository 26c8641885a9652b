// images/safety.ts on hand-crafted files with a stub qemu-img runner: the order of checks
// (unsafe, declared format, allowed formats, cross-check), raw/iso/gpt/mbr never reaching
// qemu-img, every cross-check disagreement, and pass-through of tool failures.
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KilnError } from '../../../agent/errors.js';
import { loadConfig } from '../../../agent/config/load.js';
import { assessImage, declaredMatches, evaluateImage, imageVerdict, policyFromConfig, qemuFormatOf, type ImagePolicy } from '../../../agent/images/safety.js';
import { QemuImg } from '../../../agent/tools/qemu-img.js';
import type { RunOptions, RunResult, Runner } from '../../../agent/tools/run.js';
import * as h from './headers.js';

const MiB = 1024 * 1024;
const dir = await mkdtemp(join(tmpdir(), 'kiln-safety-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const file = async (name: string, data: Buffer) => {
  const p = join(dir, name);
  await writeFile(p, data);
  return p;
};

function stubQemuImg(answer: (args: readonly string[]) => Partial<RunResult> | Error): { qemuImg: QemuImg; calls: Array<readonly string[]> } {
  const calls: Array<readonly string[]> = [];
  const runner: Runner = async (_program: string, args: readonly string[], _o: RunOptions) => {
    calls.push(args);
    const a = answer(args);
    if (a instanceof Error) throw a;
    return { stdout: '', stderr: '', exitCode: 0, durationMs: 1, ...a };
  };
  return { qemuImg: new QemuImg({ addressSpaceBytes: 2 ** 31, cpuSeconds: 30, inspectTimeoutMs: 1000, convertTimeoutMs: 1000 }, runner), calls };
}
const infoJson = (o: Record<string, unknown>) => ({ stdout: JSON.stringify({ 'virtual-size': 64 * MiB, format: 'qcow2', 'actual-size': 4096, ...o }) });
const policy: ImagePolicy = policyFromConfig(loadConfig({}));

t.test('policyFromConfig, qemuFormatOf, declaredMatches', async (t) => {
  t.same(policy.allowedFormats, ['raw', 'qcow2', 'vmdk', 'iso']);
  t.equal(policy.maxVirtualSize, 2 * 1024 ** 4);
  t.equal(qemuFormatOf('iso'), 'raw');
  t.equal(qemuFormatOf('gpt'), 'raw');
  t.equal(qemuFormatOf('mbr'), 'raw');
  t.equal(qemuFormatOf('vhd'), 'vpc');
  t.equal(qemuFormatOf('qcow2'), 'qcow2');
  t.ok(declaredMatches('gpt', 'raw'));
  t.ok(declaredMatches('vhd', 'vpc'));
  t.notOk(declaredMatches('iso', 'raw'));
  t.notOk(declaredMatches('qcow2', 'raw'));
});

t.test('raw, iso, gpt and mbr images never reach qemu-img', async (t) => {
  const { qemuImg, calls } = stubQemuImg(() => new Error('must not be called'));
  for (const [name, buf, fmt] of [['r.img', Buffer.alloc(MiB, 3), 'raw'], ['i.iso', h.iso(), 'iso'], ['g.img', h.gpt(Buffer.alloc(MiB)), 'gpt'], ['m.img', h.mbr(Buffer.alloc(MiB)), 'mbr']] as const) {
    const a = await assessImage(await file(name, buf), { policy, qemuImg });
    t.equal(a.format, fmt);
    t.equal(a.qemuFormat, 'raw');
  }
  t.equal(calls.length, 0);
});

t.test('a consistent qcow2 is accepted after qemu-img info -f qcow2 agrees', async (t) => {
  const { qemuImg, calls } = stubQemuImg(() => infoJson({}));
  const p = await file('ok.qcow2', h.qcow2());
  const a = await assessImage(p, { policy, qemuImg, declaredFormat: 'qcow2' });
  t.match(a, { format: 'qcow2', qemuFormat: 'qcow2', virtualSize: 64 * MiB });
  t.ok(a.actualSize >= 0);
  t.same(calls, [['info', '-f', 'qcow2', '--output=json', '--force-share', p]]);
});

t.test('every disagreement with qemu-img is unsafe', async (t) => {
  const p = await file('x.qcow2', h.qcow2());
  const cases: Array<[string, Partial<RunResult> | Error, string]> = [
    ['size', infoJson({ 'virtual-size': 1 }), 'qemu_img.virtual_size'],
    ['format', infoJson({ format: 'raw' }), 'qemu_img.format'],
    ['backing', infoJson({ 'backing-filename': '/etc/passwd' }), 'qemu_img.backing_file'],
    ['data file', infoJson({ 'format-specific': { type: 'qcow2', data: { 'data-file': '/dev/sda' } } }), 'qemu_img.data_file'],
    ['failure', new KilnError('KILN_TOOL_FAILED', 'exit 1', { exitCode: 1, stderrTail: 'Could not open' }), 'qemu_img.refused'],
    ['timeout', new KilnError('KILN_TIMEOUT', 'slow'), 'qemu_img.refused'],
  ];
  for (const [name, answer, code] of cases) {
    const { qemuImg } = stubQemuImg(() => answer);
    const err = await assessImage(p, { policy, qemuImg }).catch((e: unknown) => e);
    t.match(err, { code: 'KILN_IMAGE_UNSAFE' }, name);
    t.ok(((err as KilnError).details.reasons as string[]).some((r) => r.startsWith(`${code}:`)), `${name}: ${code}`);
  }
  const missing = stubQemuImg(() => new KilnError('KILN_TOOL_MISSING', 'no qemu-img'));
  await t.rejects(assessImage(p, { policy, qemuImg: missing.qemuImg }), { code: 'KILN_TOOL_MISSING' }, 'a missing tool is not a verdict');
});

t.test('vmdk: qemu-img reading an extent from another file is unsafe', async (t) => {
  const p = await file('v.vmdk', h.vmdk());
  const vm = (extents: unknown[], createType = 'monolithicSparse') => stubQemuImg(() => ({ stdout: JSON.stringify({ 'virtual-size': 131072 * 512, format: 'vmdk', 'format-specific': { type: 'vmdk', data: { 'create-type': createType, extents } } }) }));
  t.equal((await assessImage(p, { policy, qemuImg: vm([{ filename: p }]).qemuImg })).format, 'vmdk');
  const other = await assessImage(p, { policy, qemuImg: vm([{ filename: '/etc/shadow' }]).qemuImg }).catch((e: unknown) => e);
  t.ok(((other as KilnError).details.reasons as string[]).some((r) => r.startsWith('qemu_img.vmdk_extents:')));
  const two = await assessImage(p, { policy, qemuImg: vm([{ filename: p }, { filename: p }]).qemuImg }).catch((e: unknown) => e);
  t.ok(((two as KilnError).details.reasons as string[]).some((r) => r.startsWith('qemu_img.vmdk_extents:')));
  const flat = await assessImage(p, { policy, qemuImg: vm([{ filename: p }], 'monolithicFlat').qemuImg }).catch((e: unknown) => e);
  t.ok(((flat as KilnError).details.reasons as string[]).some((r) => r.startsWith('qemu_img.vmdk_create_type:')));
});

t.test('order: unsafe before mismatch before not-allowed, none of them calling qemu-img', async (t) => {
  const { qemuImg, calls } = stubQemuImg(() => new Error('must not be called'));
  const backed = await file('b.img', h.qcow2({ version: 2, backing: '/x' }).subarray(0, 100));
  await t.rejects(assessImage(backed, { policy, qemuImg, declaredFormat: 'raw' }), { code: 'KILN_IMAGE_UNSAFE', details: { format: 'qcow2', declaredFormat: 'raw' } });
  const q = await file('q.qcow2', h.qcow2());
  await t.rejects(assessImage(q, { policy, qemuImg, declaredFormat: 'raw' }), { code: 'KILN_FORMAT_MISMATCH', details: { detectedFormat: 'qcow2', declaredFormat: 'raw' } });
  const vhd = await file('d.vhd', h.vhdDynamic());
  await t.rejects(assessImage(vhd, { policy, qemuImg, declaredFormat: 'vhd' }), { code: 'KILN_FORMAT_NOT_ALLOWED', details: { format: 'vhd' } });
  await t.rejects(assessImage(await file('q.qed', h.qed()), { policy: { ...policy, allowedFormats: ['raw', 'qcow2', 'qed'] }, qemuImg }), { code: 'KILN_IMAGE_UNSAFE' }, 'qed even if listed');
  await t.rejects(assessImage(q, { policy, qemuImg, declaredFormat: 'ploop' }), { code: 'KILN_BAD_REQUEST' });
  await t.rejects(assessImage(join(dir, 'absent'), { policy, qemuImg }), { code: 'KILN_NOT_FOUND' });
  await t.rejects(assessImage(q, { policy: { ...policy, maxVirtualSize: MiB }, qemuImg }), { code: 'KILN_IMAGE_UNSAFE', details: { reasonCodes: ['virtual_size'] } });
  t.equal(calls.length, 0);
});

t.test('evaluateImage reports instead of throwing', async (t) => {
  const { qemuImg } = stubQemuImg(() => infoJson({}));
  const ev = await evaluateImage(await file('e.qcow2', h.qcow2({ backing: '/etc/passwd' })), { policy, qemuImg });
  t.equal(ev.error?.code, 'KILN_IMAGE_UNSAFE');
  t.match(ev.reasons, [/^qcow2\.backing_file: backing file "\/etc\/passwd" \(absolute\)$/]);
  t.equal(ev.inspection.backing?.name, '/etc/passwd');
  const ok = await evaluateImage(await file('f.qcow2', h.qcow2()), { policy, qemuImg });
  t.equal(ok.error, undefined);
  t.same(ok.reasons, []);
  t.equal(ok.qemu?.format, 'qcow2');
});

t.test('imageVerdict gives the DiskInspectJson fields without throwing', async (t) => {
  const { qemuImg } = stubQemuImg(() => infoJson({}));
  const bad = await imageVerdict(await file('iv.qcow2', h.qcow2({ backing: 'base.raw' })), { policy, qemuImg });
  t.same(Object.keys(bad).sort(), ['actualSize', 'backingChain', 'format', 'reasons', 'safe', 'virtualSize']);
  t.match(bad, { format: 'qcow2', virtualSize: 64 * MiB, safe: false, backingChain: [join(dir, 'base.raw')] });
  t.match(bad.reasons, [/^qcow2\.backing_file:/]);
  const good = await imageVerdict(await file('iv2.qcow2', h.qcow2()), { policy, qemuImg });
  t.match(good, { format: 'qcow2', safe: true, reasons: [], backingChain: [], actualSize: 4096 });
});
