// The body of scripts/bench/disk (see there). Baselines are the bare qemu-img commands an
// operator would type for the same result, run alternately with kiln in the same run, so page
// cache and load affect both alike.
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../../build/agent/config/load.js';
import { silentLogger } from '../../build/agent/log.js';
import { run } from '../../build/agent/tools/run.js';
import { QemuImg } from '../../build/agent/tools/qemu-img.js';
import { DiskService } from '../../build/agent/disks/service.js';

const { values: opt } = parseArgs({
  options: {
    'virtual-gib': { type: 'string', default: '10' },
    'data-mib': { type: 'string', default: '512' },
    runs: { type: 'string', default: '3' },
    dir: { type: 'string', default: '/var/tmp' },
    'no-volume': { type: 'boolean', default: false },
  },
});
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const virtual = Number(opt['virtual-gib']) * GiB;
const dataBytes = Number(opt['data-mib']) * MiB;
const runs = Number(opt.runs);
const HOUR = 3_600_000;

const sh = async (program, args) => (await run(program, args, { timeoutMs: HOUR })).stdout;
/** A bare command plus the fsync an operator needs for a durable disk (kiln fsyncs; qemu-img convert's
 * default destination cache mode is "unsafe", which never flushes). `sync FILE` fsyncs just that file. */
const durable = async (program, args, out) => {
  await sh(program, args);
  await sh('sync', [out]);
};
const root = mkdtempSync(join(opt.dir, 'kiln-bench-disk-'));
const cleanups = [() => rmSync(root, { recursive: true, force: true })];
const cleanup = async () => {
  for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => undefined);
};
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));

async function timed(fn) {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

try {
  // The image: data in 4 MiB chunks spread over the virtual size (like an installed OS), rest holes.
  process.stderr.write(`making a ${opt['virtual-gib']} GiB-virtual image with ${opt['data-mib']} MiB of data...\n`);
  const rawSrc = join(root, 'src.raw');
  const fd = openSync(rawSrc, 'w', 0o600);
  const chunk = 4 * MiB;
  const chunks = Math.max(1, Math.floor(dataBytes / chunk));
  const stride = Math.floor(virtual / chunks / chunk) * chunk;
  const buf = Buffer.alloc(chunk);
  for (let i = 0; i < chunks; i++) {
    for (let j = 0; j < chunk; j += 4096) buf.writeUInt32LE((i * 7919 + j) >>> 0, j);
    writeSync(fd, buf, 0, chunk, i * stride);
  }
  closeSync(fd);
  await sh('truncate', ['-s', String(virtual), rawSrc]);
  const state = join(root, 'state');
  const qcowSrc = join(root, 'src.qcow2');
  await sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', rawSrc, qcowSrc]);
  rmSync(rawSrc);
  const hex = createHash('sha256').update(readFileSync(qcowSrc)).digest('hex');
  const baseDir = join(state, 'images', 'sha256', hex);
  mkdirSync(baseDir, { recursive: true, mode: 0o700 });
  const base = join(baseDir, 'disk');
  await sh('mv', [qcowSrc, base]);
  const image = { digest: `sha256:${hex}`, format: 'qcow2', virtualSize: virtual, actualSize: 0, path: base, sources: [], minDisk: 0, minRam: 0, inUseBy: [] };
  const out = join(root, 'out');
  mkdirSync(out, { mode: 0o700 });

  const service = (flatFormat) => {
    const config = loadConfig({ flags: { stateDir: state, flatFormat } });
    return new DiskService({ qemuImg: QemuImg.fromConfig(config), config, log: silentLogger() });
  };
  const kilnQcow = service('qcow2');
  const kilnRaw = service('raw');

  let device;
  if (!opt['no-volume']) {
    const backing = join(root, 'volume.img');
    await sh('truncate', ['-s', String(virtual), backing]);
    device = (await sh('losetup', ['--find', '--show', backing])).trim();
    cleanups.push(() => sh('losetup', ['-d', device]));
  }

  const dst = (name) => join(out, name);
  const cases = [
    {
      mode: 'overlay',
      bare: 'qemu-img create -f qcow2 -b BASE -F qcow2 OUT SIZE; sync OUT',
      kiln: () => kilnQcow.create({ target: dst('k.qcow2'), image, mode: 'overlay' }),
      base: () => durable('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', dst('b.qcow2'), String(virtual)], dst('b.qcow2')),
      tuned: () => durable('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', '-b', base, '-F', 'qcow2', dst('t.qcow2'), String(virtual)], dst('t.qcow2')),
    },
    {
      mode: 'flat qcow2',
      bare: 'qemu-img convert -f qcow2 -O qcow2 BASE OUT; sync OUT',
      kiln: () => kilnQcow.create({ target: dst('k.qcow2'), image, mode: 'flat' }),
      base: () => durable('qemu-img', ['convert', '-f', 'qcow2', '-O', 'qcow2', base, dst('b.qcow2')], dst('b.qcow2')),
      tuned: () => durable('qemu-img', ['convert', '-W', '-t', 'none', '-f', 'qcow2', '-O', 'qcow2', base, dst('t.qcow2')], dst('t.qcow2')),
    },
    {
      mode: 'flat raw',
      bare: 'qemu-img convert -f qcow2 -O raw BASE OUT; sync OUT',
      kiln: () => kilnRaw.create({ target: dst('k.raw'), image, mode: 'flat' }),
      base: () => durable('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', base, dst('b.raw')], dst('b.raw')),
      tuned: () => durable('qemu-img', ['convert', '-W', '-t', 'none', '-f', 'qcow2', '-O', 'raw', base, dst('t.raw')], dst('t.raw')),
    },
  ];
  if (device) {
    cases.push({
      mode: 'volume (loop)',
      bare: 'qemu-img convert -n -f qcow2 -O raw BASE DEV; sync DEV',
      kiln: () => kilnRaw.create({ target: device, image, mode: 'volume' }),
      base: () => durable('qemu-img', ['convert', '-n', '-f', 'qcow2', '-O', 'raw', base, device], device),
      tuned: () => durable('qemu-img', ['convert', '-n', '-W', '-t', 'none', '-f', 'qcow2', '-O', 'raw', base, device], device),
    });
  }

  const rows = [];
  for (const c of cases) {
    const k = [];
    const b = [];
    const tu = [];
    for (let i = 0; i < runs; i++) {
      // Rotate which goes first, so none always runs on a warmer cache.
      const all = [['b', c.base], ['k', c.kiln], ['t', c.tuned]];
      const order = [...all.slice(i % 3), ...all.slice(0, i % 3)];
      for (const [who, fn] of order) {
        const s = await timed(fn);
        (who === 'k' ? k : who === 'b' ? b : tu).push(s);
        await sh('sync', []);
        rmSync(out, { recursive: true, force: true });
        mkdirSync(out, { mode: 0o700 });
      }
    }
    rows.push({ mode: c.mode, kiln: median(k), bare: median(b), tuned: median(tu), baseline: c.bare });
    process.stderr.write(`  ${c.mode}: kiln ${median(k).toFixed(3)} s, bare ${median(b).toFixed(3)} s, bare with kiln's flags ${median(tu).toFixed(3)} s\n`);
  }

  console.log(`\nkiln disk materialization, ${opt['virtual-gib']} GiB virtual, ${opt['data-mib']} MiB data, qcow2 base, median of ${runs} (lower is better)`);
  console.log(`${'mode'.padEnd(16)}${'kiln s'.padStart(10)}${'bare s'.padStart(10)}${'kiln/bare'.padStart(11)}${'flags s'.padStart(10)}${'kiln/flags'.padStart(12)}  baseline (bare)`);
  for (const r of rows) {
    console.log(`${r.mode.padEnd(16)}${r.kiln.toFixed(3).padStart(10)}${r.bare.toFixed(3).padStart(10)}${(r.kiln / r.bare).toFixed(2).padStart(11)}${r.tuned.toFixed(3).padStart(10)}${(r.kiln / r.tuned).toFixed(2).padStart(12)}  ${r.baseline}`);
  }
  console.log('bare: the command as an operator types it, plus sync of the result (kiln\'s disks are durable); flags: the same command with the flags kiln passes (-W -t none),');
  console.log('so kiln/flags is kiln\'s own overhead (base re-inspection, checks, fsync, atomic publish, device claim).');
} finally {
  await cleanup();
}
