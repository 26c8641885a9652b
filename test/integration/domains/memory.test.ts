// 1,000 define/start/destroy/undefine cycles on test:///default through LibvirtHypervisor:
// resident memory must not grow (no leaked domain handles, strings or koffi callbacks).
import t from 'tap';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import koffi from 'koffi';
import { LibvirtHypervisor } from '../../../agent/domains/libvirt-hypervisor.js';
import { domainXml } from '../../../agent/domains/xml.js';
import { silentLogger } from '../../../agent/log.js';
import { makeSpec } from './helpers.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
// glibc's own count of bytes in use on the malloc heap: libvirt's objects and strings live there,
// so a leaked handle shows up here byte-exactly while RSS would hide it in page granularity.
const Mallinfo2 = koffi.struct('kiln_test_mallinfo2', {
  arena: 'size_t', ordblks: 'size_t', smblks: 'size_t', hblks: 'size_t', hblkhd: 'size_t',
  usmblks: 'size_t', fsmblks: 'size_t', uordblks: 'size_t', fordblks: 'size_t', keepcost: 'size_t',
});
const mallinfo2 = koffi.load('libc.so.6').func('mallinfo2', Mallinfo2, []) as () => { uordblks: number | bigint };
const heapInUse = (): number => Number(mallinfo2().uordblks);
const MiB = 1024 * 1024;
const CYCLES = 1000;
const WARMUP = 200;
/** Allowed growth from cycle WARMUP to CYCLES: 800 cycles x 11 libvirt calls; a leak of a
 *  domain handle or XML string per cycle (several KiB each in libvirt) would exceed it. */
const BOUND = 6 * MiB;
/**
 * Measured here: the trend is 40-70 bytes/cycle with nothing leaking (koffi's async machinery and
 * the test harness: a bare koffi async call loop shows ~0.5 byte/call), and a leaked virDomain
 * handle adds ~160 bytes; a cycle looks up 3 handles, so leaking them shows as ~+480.
 */
const SLOPE_BOUND = 200;
const SAMPLE_EVERY = 25;

/** Theil-Sen estimator: the median of pairwise slopes, robust to the odd step in the heap. */
function medianSlope(points: Array<[number, number]>): number {
  const slopes: number[] = [];
  for (let i = 0; i < points.length; i++) {
    for (let j = i + 1; j < points.length; j++) slopes.push((points[j]![1] - points[i]![1]) / (points[j]![0] - points[i]![0]));
  }
  slopes.sort((a, b) => a - b);
  return slopes[Math.floor(slopes.length / 2)]!;
}

t.test(`${CYCLES} define/start/destroy/undefine cycles keep RSS flat`, async (t) => {
  const hv = new LibvirtHypervisor('test:///default', silentLogger());
  t.teardown(() => hv.close());
  await hv.connect();
  const base = makeSpec({ name: 'kiln-mem' });
  const rss = (): number => { gc(); gc(); return process.memoryUsage().rss; };
  let atWarmup = 0;
  let heapAtWarmup = 0;
  const heapSamples: Array<[number, number]> = [];
  const samples: Array<[number, number]> = [];
  const started = Date.now();
  for (let i = 1; i <= CYCLES; i++) {
    const spec = { ...base, name: `kiln-mem-${i % 7}` };
    await hv.define(domainXml(spec));
    await hv.start(spec.name);
    await hv.destroy(spec.name);
    await hv.undefine(spec.name);
    if (i === WARMUP) { atWarmup = rss(); heapAtWarmup = heapInUse(); }
    if (i % 200 === 0) samples.push([i, rss()]);
    if (i >= WARMUP && i % SAMPLE_EVERY === 0) { gc(); heapSamples.push([i, heapInUse()]); }
  }
  const elapsed = Date.now() - started;
  const end = rss();
  const growth = end - atWarmup;
  const heapGrowth = heapInUse() - heapAtWarmup;
  const slope = medianSlope(heapSamples);
  t.comment(`RSS by cycle: ${samples.map(([i, r]) => `${i}: ${(r / MiB).toFixed(1)} MiB`).join(', ')}`);
  t.comment(`growth from cycle ${WARMUP} to ${CYCLES}: ${(growth / 1024).toFixed(0)} KiB; ${CYCLES} cycles in ${elapsed} ms (${(elapsed / CYCLES).toFixed(2)} ms/cycle)`);
  t.comment(`malloc heap in use (mallinfo2.uordblks) grew ${(heapGrowth / 1024).toFixed(1)} KiB over ${CYCLES - WARMUP} cycles (${(heapGrowth / (CYCLES - WARMUP)).toFixed(0)} bytes/cycle)`);
  t.comment(`koffi callbacks registered: ${koffi.stats().callbacks}`);
  t.ok(growth < BOUND, `RSS growth ${(growth / MiB).toFixed(2)} MiB < ${BOUND / MiB} MiB`);
  t.comment(`malloc heap trend (Theil-Sen over ${heapSamples.length} samples): ${slope.toFixed(1)} bytes/cycle`);
  t.ok(slope < SLOPE_BOUND, `malloc heap trend ${slope.toFixed(1)} bytes/cycle < ${SLOPE_BOUND} (a leaked handle per lookup would add ~480)`);
  t.ok(koffi.stats().callbacks <= 4, 'no callback slots leaked (4 process-wide trampolines)');
  t.equal((await hv.listKiln()).filter((d) => d.name.startsWith('kiln-mem-')).length, 0, 'nothing left defined');
});
