// Property-based tests of the inspector (fast-check): random bytes and mutated valid headers of
// every format never make it throw anything but a KilnError, never hang, and never read more
// than its budget, counted through an injected reader that also lies about the file size.
import t from 'tap';
import fc from 'fast-check';
import { KilnError } from '../../../agent/errors.js';
import { DEFAULT_MAX_READ_BYTES, inspectSource } from '../../../agent/formats/inspect.js';
import type { ByteSource } from '../../../agent/formats/source.js';
import type { InspectResult } from '../../../agent/formats/types.js';
import { seeds } from './headers.js';

const SEEDS = seeds();
// An inspection takes milliseconds; 5 s only absorbs a loaded shared host, a real hang still fails.
const MAX_MS = 5000;

/** A reader over `data` that counts every byte handed out; `size` may claim far more than exists. */
function countingSource(data: Buffer, size: number): ByteSource & { bytes: number; calls: number; maxRead: number } {
  const src = {
    size,
    bytes: 0,
    calls: 0,
    maxRead: 0,
    async read(offset: number, length: number) {
      src.calls++;
      src.maxRead = Math.max(src.maxRead, length);
      const n = Math.max(0, Math.min(length, size - offset));
      src.bytes += n;
      const out = Buffer.alloc(n);
      if (offset < data.length) data.copy(out, 0, offset, Math.min(data.length, offset + n));
      return out;
    },
  };
  return src;
}

interface Outcome { result?: InspectResult; error?: unknown; ms: number; bytes: number }

async function run(data: Buffer, size: number, maxReadBytes?: number): Promise<Outcome> {
  const src = countingSource(data, size);
  const started = Date.now();
  try {
    const result = await inspectSource(src, maxReadBytes === undefined ? {} : { maxReadBytes });
    return { result, ms: Date.now() - started, bytes: src.bytes };
  } catch (error) {
    return { error, ms: Date.now() - started, bytes: src.bytes };
  }
}

function holds(o: Outcome, budget: number): boolean {
  if (o.error !== undefined && !(o.error instanceof KilnError)) throw o.error;
  if (o.ms > MAX_MS) throw new Error(`inspection took ${o.ms} ms`);
  if (o.bytes > budget) throw new Error(`read ${o.bytes} bytes, budget ${budget}`);
  if (o.result) {
    if (o.result.bytesRead !== o.bytes) throw new Error(`bytesRead ${o.result.bytesRead} != counted ${o.bytes}`);
    if (o.result.safe !== (o.result.reasons.length === 0)) throw new Error('safe disagrees with reasons');
    if (!Number.isFinite(o.result.virtualSize) || o.result.virtualSize < 0) throw new Error(`virtual size ${o.result.virtualSize}`);
    for (const r of o.result.reasons) if (typeof r.code !== 'string' || typeof r.message !== 'string') throw new Error('malformed reason');
  }
  return true;
}

const mutation = fc.record({
  seed: fc.integer({ min: 0, max: SEEDS.length - 1 }),
  writes: fc.array(fc.record({ at: fc.nat({ max: 300 * 1024 }), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }), { maxLength: 24 }),
  // write into the header area most of the time: that is where the parsers look
  headerWrites: fc.array(fc.record({ at: fc.nat({ max: 1024 }), value: fc.integer({ min: 0, max: 255 }) }), { maxLength: 16 }),
  truncate: fc.option(fc.nat({ max: 300 * 1024 }), { nil: undefined }),
  claimedExtra: fc.constantFrom(0, 0, 1, 512, 2 ** 40, 2 ** 52),
});

t.test('random bytes: only KilnError, bounded time and bytes', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 70 * 1024 }), fc.constantFrom(0, 1, 2 ** 45), async (bytes, extra) => {
      const data = Buffer.from(bytes);
      return holds(await run(data, data.length + extra), DEFAULT_MAX_READ_BYTES);
    }),
    { numRuns: 300 },
  );
  t.pass('300 random inputs');
});

t.test('random bytes behind every magic: only KilnError, bounded time and bytes', async (t) => {
  const magics = SEEDS.map(([, b]) => b.subarray(0, 8));
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: magics.length - 1 }), fc.uint8Array({ minLength: 0, maxLength: 4096 }), async (i, rest) => {
      const data = Buffer.concat([magics[i]!, Buffer.from(rest)]);
      return holds(await run(data, data.length), DEFAULT_MAX_READ_BYTES);
    }),
    { numRuns: 300 },
  );
  t.pass('300 inputs');
});

t.test('mutated headers of every format: only KilnError, bounded time and bytes', async (t) => {
  let unsafe = 0;
  await fc.assert(
    fc.asyncProperty(mutation, async (m) => {
      const data = Buffer.from(SEEDS[m.seed]![1]);
      for (const w of m.headerWrites) if (w.at < data.length) data[w.at] = w.value;
      for (const w of m.writes) Buffer.from(w.bytes).copy(data, Math.min(w.at, data.length));
      const cut = m.truncate === undefined ? data : data.subarray(0, Math.min(m.truncate, data.length));
      const o = await run(cut, cut.length + m.claimedExtra);
      if (o.result && !o.result.safe) unsafe++;
      return holds(o, DEFAULT_MAX_READ_BYTES);
    }),
    { numRuns: 600 },
  );
  t.ok(unsafe > 0, `${unsafe} of 600 mutations were found unsafe`);
});

t.test('a small budget is never exceeded, whatever the input', async (t) => {
  await fc.assert(
    fc.asyncProperty(mutation, fc.integer({ min: 1024, max: 256 * 1024 }), async (m, budget) => {
      const data = Buffer.from(SEEDS[m.seed]![1]);
      for (const w of m.writes) Buffer.from(w.bytes).copy(data, Math.min(w.at, data.length));
      const o = await run(data, data.length + m.claimedExtra, budget);
      return holds(o, budget);
    }),
    { numRuns: 300 },
  );
  t.pass('budget respected');
});

t.test('the same bytes give the same verdict', async (t) => {
  await fc.assert(
    fc.asyncProperty(mutation, async (m) => {
      const data = Buffer.from(SEEDS[m.seed]![1]);
      for (const w of m.headerWrites) if (w.at < data.length) data[w.at] = w.value;
      const a = await run(data, data.length);
      const b = await run(data, data.length);
      return JSON.stringify(a.result) === JSON.stringify(b.result);
    }),
    { numRuns: 100 },
  );
  t.pass('deterministic');
});

t.test('the properties can fail: a reader that throws a plain Error is reported', async (t) => {
  const broken: ByteSource = { size: 10, read: async () => { throw new TypeError('boom'); } };
  const err = await inspectSource(broken).catch((e: unknown) => e);
  t.ok(err instanceof TypeError, 'source errors are not swallowed');
  t.throws(() => holds({ error: err, ms: 1, bytes: 0 }, 10), /boom/);
  t.throws(() => holds({ ms: 1, bytes: 11 }, 10), /budget/);
});
