// 1,000 define/start/(read XML, list)/destroy/undefine cycles on test:///default through LibvirtHypervisor:
// resident memory must not grow (no leaked domain handles, strings or koffi callbacks).
// RSS moves in pages and hides small leaks, so glibc's malloc heap (where libvirt's handles and
// strings live; mallinfo2 sums every arena, worker threads' included) is sampled every 25 cycles
// and its trend estimated with Theil-Sen (median of pairwise slopes), which ignores the odd
// one-off spike a plain first/last difference would report as growth or shrinkage.
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
const Mallinfo2 = koffi.struct('kiln_test_mallinfo2', {
  arena: 'size_t', ordblks: 'size_t', smblks: 'size_t', hblks: 'size_t', hblkhd: 'size_t',
  usmblks: 'size_t', fsmblks: 'size_t', uordblks: 'size_t', fordblks: 'size_t', keepcost: 'size_t',
});
const mallinfo2 = koffi.load('libc.so.6').func('mallinfo2', Mallinfo2, []) as () => { uordblks: number | bigint };
const heapInUse = (): number => { gc(); return Number(mallinfo2().uordblks); };
const rss = (): number => { gc(); return process.memoryUsage().rss; };

const MiB = 1024 * 1024;
const CYCLES = 1000;
const WARMUP = 200;
const SAMPLE_EVERY = 25;
/** RSS growth allowed from cycle WARMUP to CYCLES. */
const RSS_BOUND = 6 * MiB;
/**
 * Measured on this kind of host: 40-95 bytes/cycle with nothing leaking (the tap harness and
 * koffi's async machinery, growing with host load; plain node shows ~23), and skipping one
 * virDomainFree in three (about one leaked handle per cycle) shows as ~+160. A cycle looks up 3
 * handles, so leaking them shows as ~+480: clearly above the bound. Not freeing the domain XML
 * string (declaring virDomainGetXMLDesc without koffi's free-after-use `!`) measured 2,152.
 */
const SLOPE_BOUND = 250;

/** Theil-Sen estimator: the median of pairwise slopes. */
function medianSlope(points: Array<[number, number]>): number {
  const slopes: number[] = [];
  for (let i = 0; i < points.length; i++) {
    for (let j = i + 1; j < points.length; j++) slopes.push((points[j]![1] - points[i]![1]) / (points[j]![0] - points[i]![0]));
  }
  slopes.sort((a, b) => a - b);
  return slopes[Math.floor(slopes.length / 2)]!;
}

t.test(`${CYCLES} define/start/destroy/undefine cycles keep memory flat`, async (t) => {
  const hv = new LibvirtHypervisor('test:///default', silentLogger());
  t.teardown(() => hv.close());
  await hv.connect();
  const base = makeSpec({ name: 'kiln-mem' });
  const rssSamples: Array<[number, number]> = [];
  const heapSamples: Array<[number, number]> = [];
  const started = Date.now();
  for (let i = 1; i <= CYCLES; i++) {
    const name = `kiln-mem-${i % 7}`;
    await hv.define(domainXml({ ...base, name }));
    await hv.start(name);
    // Strings libvirt allocates for the caller (domain XML, metadata) and the listing's handle
    // array must be freed too: read them every cycle.
    if ((await hv.consoleLogPath(name)) !== base.consoleLogPath) throw new Error('console path not read back');
    if (!(await hv.listKiln()).some((d) => d.name === name)) throw new Error('domain not listed');
    await hv.destroy(name);
    await hv.undefine(name);
    if (i >= WARMUP && i % SAMPLE_EVERY === 0) heapSamples.push([i, heapInUse()]);
    if (i >= WARMUP && i % 200 === 0) rssSamples.push([i, rss()]);
  }
  const elapsed = Date.now() - started;
  const rssGrowth = rssSamples.at(-1)![1] - rssSamples[0]![1];
  const slope = medianSlope(heapSamples);
  const heapGrowth = heapSamples.at(-1)![1] - heapSamples[0]![1];
  t.comment(`RSS by cycle: ${rssSamples.map(([i, r]) => `${i}: ${(r / MiB).toFixed(1)} MiB`).join(', ')}`);
  t.comment(`RSS growth from cycle ${WARMUP} to ${CYCLES}: ${(rssGrowth / 1024).toFixed(0)} KiB; ${CYCLES} cycles in ${elapsed} ms (${(elapsed / CYCLES).toFixed(2)} ms/cycle, samples included)`);
  t.comment(`malloc heap: ${(heapGrowth / 1024).toFixed(1)} KiB first to last sample; trend ${slope.toFixed(1)} bytes/cycle over ${heapSamples.length} samples`);
  t.comment(`koffi callbacks registered: ${koffi.stats().callbacks}`);
  t.ok(rssGrowth < RSS_BOUND, `RSS growth ${(rssGrowth / MiB).toFixed(2)} MiB < ${RSS_BOUND / MiB} MiB`);
  t.ok(slope < SLOPE_BOUND, `malloc heap trend ${slope.toFixed(1)} bytes/cycle < ${SLOPE_BOUND} (leaking handles: ~480, the XML string: ~2,150)`);
  t.ok(koffi.stats().callbacks <= 4, 'no callback slots leaked (4 process-wide trampolines)');
  t.equal((await hv.listKiln()).filter((d) => d.name.startsWith('kiln-mem-')).length, 0, 'nothing left defined');
});
