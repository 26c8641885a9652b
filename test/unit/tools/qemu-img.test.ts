// tools/qemu-img.ts with a recording fake runner: the argv of every subcommand (explicit -f,
// --output=json, --force-share, absolute paths), limits and niceness, answer parsing and error
// mapping. Plus the proof that no qemu-img call in agent/ can lack -f: the wrapper is the only
// file naming the program, and nothing else spawns programs.
import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KilnError } from '../../../agent/errors.js';
import { QEMU_FORMATS, QemuImg, safePath, type QemuFormat } from '../../../agent/tools/qemu-img.js';
import type { RunOptions, RunResult, Runner } from '../../../agent/tools/run.js';

interface Call { program: string; args: readonly string[]; options: RunOptions }

function stubRunner(answer: (c: Call) => Partial<RunResult> | Error = () => ({})): { runner: Runner; calls: Call[] } {
  const calls: Call[] = [];
  const runner: Runner = async (program, args, options) => {
    const c = { program, args, options };
    calls.push(c);
    const a = answer(c);
    if (a instanceof Error) throw a;
    return { stdout: '', stderr: '', exitCode: 0, durationMs: 1, ...a };
  };
  return { runner, calls };
}

const limits = { addressSpaceBytes: 2 * 1024 ** 3, cpuSeconds: 30, inspectTimeoutMs: 60_000, convertTimeoutMs: 3_600_000 };
const INFO = JSON.stringify({
  'virtual-size': 1073741824, filename: '/x', format: 'qcow2', 'actual-size': 200704, 'cluster-size': 65536, 'dirty-flag': false,
  'backing-filename': 'base.raw', 'full-backing-filename': '/srv/base.raw', 'backing-filename-format': 'raw',
  'format-specific': { type: 'qcow2', data: { compat: '1.1', 'data-file': '/srv/data.raw' } },
});

/** -f must be followed by a format; returns that format. */
function formatOf(args: readonly string[]): string | undefined {
  const i = args.indexOf('-f');
  return i >= 0 ? args[i + 1] : undefined;
}

t.test('every subcommand passes -f with a known format and absolute paths', async (t) => {
  const { runner, calls } = stubRunner((c) => ({
    stdout: c.args[0] === 'info' ? INFO : c.args[0] === 'check' ? '{"corruptions":0,"leaks":0}' : c.args[0] === 'measure' ? '{"required":1,"fully-allocated":2}' : '',
  }));
  const q = new QemuImg(limits, runner);
  await q.info('rel/disk.qcow2', 'qcow2');
  await q.check('/a/disk.qcow2', 'qcow2');
  await q.create('/a/new.qcow2', { format: 'qcow2', size: 1024 ** 3 });
  await q.create('/a/overlay.qcow2', { format: 'qcow2', backing: { path: 'base.raw', format: 'raw' } });
  await q.convert({ src: '/a/s.vmdk', srcFormat: 'vmdk', dst: '/dev/vg/lv', dstFormat: 'raw', noCreate: true, targetIsZero: true, cache: 'none', parallel: true, sparse: false });
  await q.resize('/a/new.qcow2', 'qcow2', 2 * 1024 ** 3);
  await q.measure('/a/s.vmdk', 'vmdk', 'qcow2');
  await q.compare('/a/x', 'raw', '/a/y', 'qcow2');
  t.equal(calls.length, 8);
  for (const c of calls) {
    t.equal(c.program, 'qemu-img');
    const fmt = formatOf(c.args);
    t.ok(fmt && (QEMU_FORMATS as readonly string[]).includes(fmt), `${c.args[0]}: -f ${fmt}`);
    t.ok(c.options.timeoutMs > 0, `${c.args[0]}: has a timeout`);
    for (const a of c.args) if (a.includes('disk') || a.includes('.raw') || a.startsWith('/a/')) t.ok(a.startsWith('/'), `${c.args[0]}: path ${a} is absolute`);
  }
  const [info, check, create, overlay, convert, resize, measure, compare] = calls as [Call, Call, Call, Call, Call, Call, Call, Call];
  t.same(info.args, ['info', '-f', 'qcow2', '--output=json', '--force-share', join(process.cwd(), 'rel/disk.qcow2')]);
  t.same(info.options.limits, { addressSpaceBytes: limits.addressSpaceBytes, cpuSeconds: 30 }, 'info runs under prlimit');
  t.same(check.args, ['check', '-f', 'qcow2', '--output=json', '--force-share', '/a/disk.qcow2']);
  t.same(check.options.okExitCodes, [0, 2, 3]);
  t.same(create.args, ['create', '-f', 'qcow2', '/a/new.qcow2', String(1024 ** 3)]);
  t.same(overlay.args, ['create', '-f', 'qcow2', '-b', join(process.cwd(), 'base.raw'), '-F', 'raw', '/a/overlay.qcow2'], 'backing: -b ABS -F fmt');
  t.same(convert.args, ['convert', '-f', 'vmdk', '-O', 'raw', '-n', '--target-is-zero', '-t', 'none', '-W', '-S', '0', '/a/s.vmdk', '/dev/vg/lv']);
  t.equal(convert.options.niceness, 10, 'convert runs at low priority');
  t.equal(convert.options.timeoutMs, limits.convertTimeoutMs);
  t.same(resize.args, ['resize', '-f', 'qcow2', '/a/new.qcow2', String(2 * 1024 ** 3)]);
  t.same(measure.args, ['measure', '-f', 'vmdk', '-O', 'qcow2', '--output=json', '/a/s.vmdk']);
  t.same(compare.args, ['compare', '-f', 'raw', '-F', 'qcow2', '--force-share', '/a/x', '/a/y']);
  t.same(compare.options.okExitCodes, [0, 1]);
});

/**
 * Compile-time half of the proof: each line below must fail to typecheck (`npx tsc -p
 * tsconfig.test.json` reports an unused @ts-expect-error if the API ever lets a format go).
 * Never called.
 */
export function callsWithoutFormatDoNotCompile(q: QemuImg): void {
  // @ts-expect-error info needs a format
  void q.info('/a/x');
  // @ts-expect-error check needs a format
  void q.check('/a/x');
  // @ts-expect-error resize needs a format
  void q.resize('/a/x', 1);
  // @ts-expect-error measure needs a source format
  void q.measure('/a/x', 'qcow2');
  // @ts-expect-error compare needs both formats
  void q.compare('/a/x', 'raw', '/a/y');
  // @ts-expect-error convert needs a source format
  void q.convert({ src: '/a/x', dst: '/a/y', dstFormat: 'raw' });
  // @ts-expect-error 'auto' is not a format
  void q.info('/a/x', 'auto');
  // @ts-expect-error a backing file needs its format
  void q.create('/a/x', { format: 'qcow2', backing: { path: '/a/b' } });
}

t.test('a call without a format, or with an unknown one, never reaches the runner', async (t) => {
  const { runner, calls } = stubRunner();
  const q = new QemuImg(limits, runner);
  const untyped = q as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  await t.rejects(untyped.info!.call(q, '/a/x'), { code: 'KILN_BAD_REQUEST' });
  await t.rejects(untyped.info!.call(q, '/a/x', 'auto'), { code: 'KILN_BAD_REQUEST' });
  await t.rejects(untyped.check!.call(q, '/a/x', ''), { code: 'KILN_BAD_REQUEST' });
  await t.rejects(untyped.resize!.call(q, '/a/x', undefined, 10), { code: 'KILN_BAD_REQUEST' });
  await t.rejects(untyped.measure!.call(q, '/a/x', 'iso', 'raw'), { code: 'KILN_BAD_REQUEST' });
  await t.rejects(untyped.compare!.call(q, '/a/x', 'raw', '/a/y'), { code: 'KILN_BAD_REQUEST' });
  await t.rejects(q.convert({ src: '/a/x', srcFormat: undefined as unknown as QemuFormat, dst: '/a/y', dstFormat: 'raw' }), { code: 'KILN_BAD_REQUEST' });
  await t.rejects(q.convert({ src: '/a/x', srcFormat: 'raw', dst: '/a/y', dstFormat: 'luks' as never }), { code: 'KILN_BAD_REQUEST' });
  await t.rejects(q.create('/a/x', { format: 'qcow2', backing: { path: '/a/b', format: 'probe' as QemuFormat } }), { code: 'KILN_BAD_REQUEST' });
  await t.rejects(q.create('/a/x', { format: 'qcow2' }), { code: 'KILN_BAD_REQUEST' }, 'no size and no backing');
  await t.rejects(q.convert({ src: '/a/x', srcFormat: 'raw', dst: '/a/y', dstFormat: 'raw', targetIsZero: true }), { code: 'KILN_BAD_REQUEST' });
  await t.rejects(q.convert({ src: '/a/x', srcFormat: 'raw', dst: '/a/y', dstFormat: 'qcow2', targetOptions: { data_file: '/a,b' } }), { code: 'KILN_BAD_REQUEST' });
  t.equal(calls.length, 0);
});

t.test('paths qemu-img could read as protocols or options are made absolute or refused', async (t) => {
  t.equal(safePath('json:{"driver":"file"}'), join(process.cwd(), 'json:{"driver":"file"}'));
  t.equal(safePath('nbd:localhost:10809'), join(process.cwd(), 'nbd:localhost:10809'));
  t.equal(safePath('-help'), join(process.cwd(), '-help'));
  t.equal(safePath('/a/../b/./c'), '/b/c');
  t.throws(() => safePath(''), { code: 'KILN_BAD_REQUEST' });
  t.throws(() => safePath('/a/b\0c'), { code: 'KILN_BAD_REQUEST' });
  t.throws(() => safePath('/a/x,backing.file.filename=/etc/shadow'), { code: 'KILN_BAD_REQUEST' });
});

t.test('info answers are parsed into QemuImgInfo', async (t) => {
  const q = new QemuImg(limits, stubRunner(() => ({ stdout: INFO })).runner);
  const info = await q.info('/a/x', 'qcow2');
  t.match(info, { format: 'qcow2', virtualSize: 1073741824, actualSize: 200704, clusterSize: 65536, backingFilename: 'base.raw', fullBackingFilename: '/srv/base.raw', backingFormat: 'raw', dataFile: '/srv/data.raw', dirty: false });
  t.same((info.raw as { filename: string }).filename, '/x');
  const bad = new QemuImg(limits, stubRunner(() => ({ stdout: 'Image: x\n' })).runner);
  await t.rejects(bad.info('/a/x', 'qcow2'), { code: 'KILN_QEMU_IMG' }, 'non-JSON answer');
  const noSize = new QemuImg(limits, stubRunner(() => ({ stdout: '{"format":"raw"}' })).runner);
  await t.rejects(noSize.info('/a/x', 'raw'), { code: 'KILN_QEMU_IMG' }, 'answer without virtual-size');
  const arr = new QemuImg(limits, stubRunner(() => ({ stdout: '[]' })).runner);
  await t.rejects(arr.info('/a/x', 'raw'), { code: 'KILN_QEMU_IMG' });
});

t.test('failures map to KILN_QEMU_IMG; timeouts and missing tools pass through', async (t) => {
  const failing = new QemuImg(limits, stubRunner(() => new KilnError('KILN_TOOL_FAILED', 'qemu-img exited with status 1', { exitCode: 1, stderrTail: "qemu-img: Could not open '/a/x'" })).runner);
  const err = await failing.info('/a/x', 'qcow2').catch((e: unknown) => e);
  t.match(err, { code: 'KILN_QEMU_IMG', details: { subcommand: 'info', exitCode: 1, stderrTail: "qemu-img: Could not open '/a/x'" } });
  const slow = new QemuImg(limits, stubRunner(() => new KilnError('KILN_TIMEOUT', 'slow')).runner);
  await t.rejects(slow.info('/a/x', 'qcow2'), { code: 'KILN_TIMEOUT' });
  const missing = new QemuImg(limits, stubRunner(() => new KilnError('KILN_TOOL_MISSING', 'no')).runner);
  await t.rejects(missing.convert({ src: '/a', srcFormat: 'raw', dst: '/b', dstFormat: 'qcow2' }), { code: 'KILN_TOOL_MISSING' });
  const full = new QemuImg(limits, stubRunner(() => new KilnError('KILN_TOOL_FAILED', 'exit 1', { exitCode: 1, stderrTail: 'qemu-img: error while writing at byte 0: No space left on device' })).runner);
  await t.rejects(full.convert({ src: '/a', srcFormat: 'raw', dst: '/b', dstFormat: 'qcow2' }), { code: 'KILN_NO_SPACE', details: { subcommand: 'convert' } }, 'a full filesystem is KILN_NO_SPACE');
  const compare = new QemuImg(limits, stubRunner(() => ({ exitCode: 1 })).runner);
  t.equal(await compare.compare('/a', 'raw', '/b', 'raw'), false, 'exit 1 means different');
});

t.test('fromConfig takes the limits from the configuration', async (t) => {
  const { runner, calls } = stubRunner(() => ({ stdout: INFO }));
  const q = QemuImg.fromConfig({ qemuImgAddressSpace: 1024 ** 3, qemuImgCpuSeconds: 7, qemuImgTimeout: 5000, convertTimeout: 9000 } as never, runner);
  await q.info('/a/x', 'qcow2');
  t.same(calls[0]!.options.limits, { addressSpaceBytes: 1024 ** 3, cpuSeconds: 7 });
  t.equal(calls[0]!.options.timeoutMs, 5000);
});

// ---- the code base: nobody else can call qemu-img --------------------------------------------

const agentDir = fileURLToPath(new URL('../../../agent/', import.meta.url));
function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

t.test('agent/: only tools/qemu-img.ts names qemu-img, only tools/run.ts spawns', async (t) => {
  const files = sources(agentDir);
  t.ok(files.length > 20, `${files.length} source files scanned`);
  for (const file of files) {
    const rel = relative(agentDir, file);
    const code = readFileSync(file, 'utf8');
    // Strip comments: prose may mention qemu-img; code may not.
    const stripped = code.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
    if (rel !== 'tools/qemu-img.ts') {
      // Spawning needs the program name as a value of its own; prose inside messages is fine.
      t.notMatch(stripped, /['"`]\s*(\/usr\/bin\/)?qemu-img\s*['"`]|['"`]qemu-img\.?\w*['"`]\s*[,)]/, `${rel} does not name qemu-img as a program`);
      t.notMatch(stripped, /\brun\(\s*['"`][^'"`]*qemu/, `${rel} does not run qemu-img through run()`);
    }
    if (rel !== 'tools/run.ts') {
      t.notMatch(stripped, /from\s+['"](node:)?child_process['"]|require\(\s*['"](node:)?child_process['"]\s*\)|import\(\s*['"](node:)?child_process['"]\s*\)/, `${rel} does not import child_process`);
    }
  }
  const wrapper = readFileSync(join(agentDir, 'tools/qemu-img.ts'), 'utf8');
  t.match(wrapper, /['"`]\s*(\/usr\/bin\/)?qemu-img\s*['"`]|['"`]qemu-img\.?\w*['"`]\s*[,)]/, 'the scan finds the wrapper\'s own program name');
  t.match("await run('qemu-img', ['info', x])", /\brun\(\s*['"`][^'"`]*qemu/, 'the scan finds a direct run() of qemu-img');
  t.equal((wrapper.match(/this\.exec\(/g) ?? []).length, 7, 'seven exec call sites, one per subcommand');
  t.equal((wrapper.match(/this\.runner\(/g) ?? []).length, 1, 'one runner call, inside exec');
  t.match(wrapper, /if \(!args\.includes\('-f'\)\)/, 'exec refuses argv without -f');
});
