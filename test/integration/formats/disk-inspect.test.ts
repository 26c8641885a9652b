// `kiln disk inspect` (agent/cli/commands/disk-inspect.ts) on real files made by qemu-img: an
// instance overlay onto a cached base is followed into the cache and judged by its base; any
// other backing file, a missing backing format or an unsafe base makes it unsafe. Also the
// commander wiring, JSON shape and exit status, without a daemon.
import t from 'tap';
import { Writable } from 'node:stream';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { loadConfig } from '../../../agent/config/load.js';
import { inspectDisk, register, resolveTarget, type DiskInspectOptions } from '../../../agent/cli/commands/disk-inspect.js';
import { Output } from '../../../agent/cli/output.js';
import type { CliContext } from '../../../agent/cli/context.js';
import { policyFromConfig } from '../../../agent/images/safety.js';
import { QemuImg } from '../../../agent/tools/qemu-img.js';

const MiB = 1024 * 1024;
const config = loadConfig({});
const qemuImg = QemuImg.fromConfig(config);
const root = await mkdtemp(join(tmpdir(), 'kiln-disk-inspect-'));
t.teardown(() => rm(root, { recursive: true, force: true }));
const state = join(root, 'state');
const baseDir = join(state, 'images', 'sha256', 'ab'.repeat(32));
const web1 = join(state, 'instances', 'web1');
await mkdir(baseDir, { recursive: true });
await mkdir(web1, { recursive: true });
const raw = join(root, 'src.raw');
await writeFile(raw, Buffer.alloc(4 * MiB, 0x11));
const base = join(baseDir, 'disk');
await qemuImg.convert({ src: raw, srcFormat: 'raw', dst: base, dstFormat: 'qcow2' });
const overlay = join(web1, 'disk.qcow2');
await qemuImg.create(overlay, { format: 'qcow2', size: 64 * MiB, backing: { path: base, format: 'qcow2' } });
const opts: DiskInspectOptions = { stateDir: state, policy: policyFromConfig(config), qemuImg };

t.test('an instance overlay onto a cached base is safe, with its chain', async (t) => {
  const r = await inspectDisk(overlay, opts);
  t.equal(r.format, 'qcow2');
  t.equal(r.virtualSize, 64 * MiB);
  t.same(r.backingChain, [base]);
  t.same(r.reasons, []);
  t.equal(r.safe, true);
  t.ok(r.actualSize > 0, 'actual size from qemu-img');
});

t.test('a backing file outside the image cache is unsafe and not followed', async (t) => {
  const outside = join(root, 'outside.qcow2');
  await qemuImg.create(outside, { format: 'qcow2', size: MiB });
  const o2 = join(root, 'o2.qcow2');
  await qemuImg.create(o2, { format: 'qcow2', size: MiB, backing: { path: outside, format: 'qcow2' } });
  const r = await inspectDisk(o2, opts);
  t.equal(r.safe, false);
  t.same(r.backingChain, [outside]);
  t.match(r.reasons, [/^qcow2\.backing_file: backing file ".*outside\.qcow2" \(absolute\)$/]);
});

t.test('an unsafe base in the cache makes the overlay unsafe', async (t) => {
  const badDir = join(state, 'images', 'sha256', 'cd'.repeat(32));
  await mkdir(badDir, { recursive: true });
  const badBase = join(badDir, 'disk');
  await qemuImg.convert({ src: raw, srcFormat: 'raw', dst: badBase, dstFormat: 'qcow2', targetOptions: { data_file: join(badDir, 'data.raw') } });
  const o3 = join(root, 'o3.qcow2');
  await qemuImg.create(o3, { format: 'qcow2', size: 8 * MiB, backing: { path: badBase, format: 'qcow2' } });
  const r = await inspectDisk(o3, opts);
  t.equal(r.safe, false);
  t.ok(r.reasons.some((x) => x.startsWith(`backing ${badBase}: qcow2.data_file:`)), JSON.stringify(r.reasons));
});

t.test('an overlay that does not record its backing format is unsafe (qemu would probe)', async (t) => {
  const o4 = join(root, 'o4.qcow2');
  await qemuImg.create(o4, { format: 'qcow2', size: 8 * MiB, backing: { path: base, format: 'qcow2' } });
  const b = await readFile(o4);
  const hl = b.readUInt32BE(100);
  t.equal(b.readUInt32BE(hl), 0xe2792aca, 'first extension is the backing format');
  b.writeUInt32BE(0x0f0f0f0f, hl); // an unknown extension type instead
  await writeFile(o4, b);
  const r = await inspectDisk(o4, opts);
  t.equal(r.safe, false);
  t.ok(r.reasons.some((x) => x.startsWith('qcow2.backing_format:')), JSON.stringify(r.reasons));
});

t.test('NAME resolves to the instance disk; bad names and missing instances are errors', async (t) => {
  t.equal(await resolveTarget('web1', state), overlay);
  t.equal(await resolveTarget(raw, state), raw);
  await t.rejects(resolveTarget('nope', state), { code: 'KILN_NOT_FOUND' });
  await t.rejects(resolveTarget('bad name;rm', state), { code: 'KILN_BAD_REQUEST' });
  await t.rejects(inspectDisk(root, opts), { code: 'KILN_BAD_REQUEST' }, 'a folder is not a disk');
  await mkdir(join(state, 'instances', 'vol1'), { recursive: true });
  await writeFile(join(state, 'instances', 'vol1', 'record.json'), JSON.stringify({ disk: { device: raw } }));
  t.equal(await resolveTarget('vol1', state), raw, 'a boot volume instance: the device from its record');
});

async function cli(args: string[]): Promise<{ stdout: string; exitCode: number | undefined }> {
  let stdout = '';
  const sink = new Writable({ write(chunk, _enc, cb) { stdout += String(chunk); cb(); } });
  const program = new Command('kiln').option('--json').exitOverride();
  const ctx: CliContext = { output: () => new Output({ json: Boolean(program.opts().json), stdout: sink, stderr: sink }), client: async () => { throw new Error('offline command asked for the daemon'); } };
  register(program, ctx);
  const before = process.exitCode;
  process.exitCode = undefined;
  await program.parseAsync(['node', 'kiln', ...args]);
  const exitCode = process.exitCode as number | undefined;
  process.exitCode = before;
  return { stdout, exitCode };
}

t.test('the command prints DiskInspectJson and exits by verdict, without a daemon', async (t) => {
  const ok = await cli(['--json', 'disk', 'inspect', '--state-dir', state, 'web1']);
  const doc = JSON.parse(ok.stdout);
  t.match(doc, { format: 'qcow2', virtualSize: 64 * MiB, backingChain: [base], safe: true, reasons: [] });
  t.type(doc.actualSize, 'number');
  t.equal(ok.exitCode, undefined, 'exit 0 when safe');
  const mismatch = await cli(['--json', 'disk', 'inspect', '--disk-format', 'raw', base]);
  const m = JSON.parse(mismatch.stdout);
  t.equal(m.safe, false);
  t.match(m.reasons, [/^format_mismatch: declared raw, detected qcow2$/]);
  t.equal(mismatch.exitCode, 9, 'KILN_IMAGE_UNSAFE exit status');
  const human = await cli(['disk', 'inspect', raw]);
  t.match(human.stdout, /format:\s+raw/);
  t.match(human.stdout, /verdict:\s+safe/);
  const missing = await cli(['--json', 'disk', 'inspect', '--state-dir', state, 'ghost']);
  t.match(JSON.parse(missing.stdout), { error: { code: 'KILN_NOT_FOUND' } });
  t.equal(missing.exitCode, 3);
});
