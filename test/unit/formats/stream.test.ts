// formats/inspect.ts StreamInspector and source.ts StreamWindow: inspecting a download while it
// streams, refusing early from the head, and agreeing with a file inspection at the end.
import t from 'tap';
import { StreamInspector, inspectBuffer } from '../../../agent/formats/inspect.js';
import { OutsideWindow, StreamWindow } from '../../../agent/formats/source.js';
import * as h from './headers.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function feed(s: StreamInspector | StreamWindow, data: Buffer, chunk = 7919): void {
  for (let off = 0; off < data.length; off += chunk) s.write(data.subarray(off, off + chunk));
}

t.test('a qcow2 with a backing file is refused from its head, before the download ends', async (t) => {
  const img = Buffer.concat([h.qcow2({ backing: '/etc/shadow' }), Buffer.alloc(4 * MiB)]);
  const s = new StreamInspector();
  feed(s, img.subarray(0, 32 * KiB));
  t.equal(await s.check(), undefined, 'not enough bytes yet');
  feed(s, img.subarray(32 * KiB, 80 * KiB));
  const early = await s.check();
  t.equal(early?.format, 'qcow2');
  t.ok(early?.reasons.some((r) => r.code === 'qcow2.backing_file'), 'refused after 80 KiB of 4 MiB');
});

t.test('finish() agrees with inspecting the whole buffer, for every seed format', async (t) => {
  for (const [name, buf] of h.seeds()) {
    const s = new StreamInspector({ maxVirtualSize: 2 ** 41 });
    feed(s, buf);
    const streamed = await s.finish();
    const whole = await inspectBuffer(buf, { maxVirtualSize: 2 ** 41 });
    t.equal(streamed.format, whole.format, `${name}: format`);
    t.equal(streamed.virtualSize, whole.virtualSize, `${name}: virtual size`);
    t.same(streamed.reasons, whole.reasons, `${name}: reasons`);
  }
});

t.test('a fixed VHD is found by the footer in the tail window of a long stream', async (t) => {
  const img = h.vhdFixed(Buffer.alloc(9 * MiB, 1));
  const s = new StreamInspector({}, { headBytes: 1 * MiB, tailBytes: 4 * KiB });
  feed(s, img, 65536);
  const r = await s.finish();
  t.equal(r.format, 'vhd');
  t.equal(r.virtualSize, 9 * MiB);
  t.same(r.reasons, []);
});

t.test('bytes needed outside the windows: no early verdict, and unsafe at the end', async (t) => {
  const img = h.vhdx();
  const s = new StreamInspector({}, { headBytes: 512 * KiB, tailBytes: 4 * KiB });
  feed(s, img);
  t.equal(await s.check(), undefined, 'the metadata region lies past the head window');
  const r = await s.finish();
  t.equal(r.safe, false);
  t.same(r.reasons.map((x) => x.code), ['inspect.outside_window']);
  const roomy = new StreamInspector();
  feed(roomy, img);
  t.same((await roomy.finish()).reasons, [], 'the default 4 MiB head covers a VHDX');
});

t.test('StreamWindow keeps only its windows', async (t) => {
  const w = new StreamWindow(64 * KiB, 8 * KiB);
  const data = Buffer.alloc(3 * MiB);
  for (let i = 0; i < data.length; i++) data[i] = i % 251;
  feed(w, data, 10000);
  w.end();
  t.equal(w.bytesSeen, 3 * MiB);
  const src = w.source();
  t.equal(src.size, 3 * MiB);
  t.same(await src.read(100, 50), data.subarray(100, 150), 'head');
  t.same(await src.read(3 * MiB - 600, 600), data.subarray(3 * MiB - 600), 'tail');
  t.ok((await src.read(MiB, 10).catch((e: unknown) => e)) instanceof OutsideWindow, 'middle is not kept');
  t.equal((await src.read(3 * MiB + 5, 10)).length, 0, 'past the end');
  t.throws(() => w.write(Buffer.alloc(1)), { code: 'KILN_INTERNAL' }, 'no writes after end');
  const small = new StreamWindow(64 * KiB, 8 * KiB);
  small.write(data.subarray(0, 70 * KiB));
  small.end();
  t.same(await small.source().read(0, 70 * KiB), data.subarray(0, 70 * KiB), 'touching windows hold the whole stream');
});

t.test('files: positional reads, folders and FIFOs refused without blocking, missing files', async (t) => {
  const { mkdtemp, rm, writeFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { openFileSource } = await import('../../../agent/formats/source.js');
  const { inspectFile } = await import('../../../agent/formats/inspect.js');
  const { run } = await import('../../../agent/tools/run.js');
  const dir = await mkdtemp(join(tmpdir(), 'kiln-source-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const img = join(dir, 'a.qcow2');
  await writeFile(img, h.qcow2());
  const src = await openFileSource(img);
  t.equal(src.size, h.qcow2().length);
  t.same(await src.read(4, 4), Buffer.from([0, 0, 0, 3]));
  t.equal((await src.read(src.size! - 2, 10)).length, 2, 'short read at the end');
  await src.close();
  t.equal((await inspectFile(img)).format, 'qcow2');
  const fifo = join(dir, 'fifo');
  await run('mkfifo', [fifo], { timeoutMs: 5000 });
  await t.rejects(inspectFile(fifo), { code: 'KILN_BAD_REQUEST' }, 'a FIFO is refused, not waited on');
  await t.rejects(inspectFile(dir), { code: 'KILN_BAD_REQUEST' }, 'a folder is refused');
  await t.rejects(inspectFile(join(dir, 'absent')), { code: 'KILN_NOT_FOUND' });
});
