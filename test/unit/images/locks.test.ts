import t from 'tap';
import { KeyedLock, SingleFlight } from '../../../agent/images/locks.js';

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

t.test('KeyedLock: one holder per key, FIFO, other keys independent, released on throw', async (t) => {
  const lock = new KeyedLock();
  const order: string[] = [];
  let inside = 0;
  let maxInside = 0;
  const job = (name: string, ms: number) =>
    lock.with('a', async () => {
      inside++;
      maxInside = Math.max(maxInside, inside);
      order.push(`${name}+`);
      await tick(ms);
      order.push(`${name}-`);
      inside--;
    });
  const other = lock.with('b', async () => {
    order.push('b');
  });
  const failing = lock.with('a', async () => {
    throw new Error('boom');
  });
  await Promise.all([job('1', 10), failing.catch(() => undefined), job('2', 1), other]);
  t.equal(maxInside, 1, 'never two holders of one key');
  t.same(order.filter((o) => o !== 'b'), ['1+', '1-', '2+', '2-'], 'FIFO, and a throwing holder releases the key');
  t.ok(order.indexOf('b') < order.indexOf('1-'), 'another key does not wait');
  await t.rejects(failing, /boom/);
  t.same(lock.busy(), [], 'no keys left behind');
});

t.test('SingleFlight: concurrent callers share one run and its events; later callers start a new one', async (t) => {
  const flights = new SingleFlight<number, string>();
  let runs = 0;
  const seen: string[][] = [[], [], []];
  const start = async (emit: (e: string) => void) => {
    runs++;
    await tick();
    emit('half');
    await tick();
    return 42;
  };
  const results = await Promise.all([0, 1, 2].map((i) => flights.run('k', (e) => seen[i]!.push(e), start)));
  t.same(results, [42, 42, 42]);
  t.equal(runs, 1, 'one run for three callers');
  t.same(seen, [['half'], ['half'], ['half']], 'every caller got the events');
  t.equal(flights.size(), 0);
  await flights.run('k', undefined, start);
  t.equal(runs, 2, 'a caller after the flight ended starts a new one');
  const failing = flights.run('x', () => { throw new Error('listener bug'); }, async (emit) => {
    emit('e');
    throw new Error('fetch failed');
  });
  await t.rejects(failing, /fetch failed/, 'a throwing listener does not mask the outcome');
});
