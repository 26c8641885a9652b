// Owns: the inspection benchmark: kiln's pure-TypeScript inspector against the baseline of
// `qemu-img info -f FMT` (through tools/qemu-img.ts, prlimit included) on the same images, in
// the same run; prints per-format times, bytes read and the ratio. Not part of the test suite.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspectFile } from '../../agent/formats/inspect.js';
import { qemuFormatOf } from '../../agent/images/safety.js';
import { QemuImg } from '../../agent/tools/qemu-img.js';
import { buildCorpus } from '../corpus/corpus.js';

const rounds = Number(process.argv[2] ?? 30);
const qemuImg = new QemuImg({ addressSpaceBytes: 2 * 1024 ** 3, cpuSeconds: 30, inspectTimeoutMs: 60_000, convertTimeoutMs: 600_000 });
const dir = await mkdtemp(join(tmpdir(), 'kiln-bench-inspect-'));
try {
  const cases = await buildCorpus(dir, qemuImg);
  const picks = ['qcow2-v3.qcow2', 'qcow2-compressed.qcow2', 'vmdk-monolithic-sparse.vmdk', 'vmdk-stream-optimized.vmdk', 'vhd-dynamic-allowed.vhd', 'vhdx-allowed.vhdx', 'vdi-allowed.vdi', 'qcow2-3t-over-ceiling.qcow2'];
  const rows: string[] = [];
  let totalInspector = 0;
  let totalQemu = 0;
  for (const name of picks) {
    if (!cases.some((c) => c.name === name)) continue;
    const path = join(dir, name);
    const first = await inspectFile(path);
    const fmt = qemuFormatOf(first.format);
    await qemuImg.info(path, fmt); // warm the page cache for both
    let t0 = process.hrtime.bigint();
    for (let i = 0; i < rounds; i++) await inspectFile(path);
    const inspector = Number(process.hrtime.bigint() - t0) / 1e6 / rounds;
    t0 = process.hrtime.bigint();
    for (let i = 0; i < rounds; i++) await qemuImg.info(path, fmt);
    const qemu = Number(process.hrtime.bigint() - t0) / 1e6 / rounds;
    totalInspector += inspector;
    totalQemu += qemu;
    rows.push(`${name.padEnd(32)} ${first.format.padEnd(6)} ${String(first.bytesRead).padStart(8)} B  inspector ${inspector.toFixed(2).padStart(7)} ms  qemu-img info ${qemu.toFixed(2).padStart(7)} ms  ratio ${(qemu / inspector).toFixed(1)}x`);
  }
  process.stdout.write(`inspection, ${rounds} rounds each (bytes read by the inspector; ratio = qemu-img time / inspector time)\n${rows.join('\n')}\n`);
  process.stdout.write(`total: inspector ${totalInspector.toFixed(2)} ms, qemu-img info ${totalQemu.toFixed(2)} ms, ratio ${(totalQemu / totalInspector).toFixed(1)}x\n`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
