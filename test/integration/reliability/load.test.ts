// Load, for correctness (scripts/bench/load measures the latencies): a burst of concurrent API
// requests of mixed kinds (status, lists, fetches of 3 images, create then remove of instances
// on test:///default) against one real kilnd. Every answer is the expected one, each image is
// downloaded exactly once (GETs counted at the server), and the state dir is consistent after.
import t from 'tap';
import { patternBytes } from '../../fixtures/fault-server.js';
import { call, consistencyProblems, qcow2Bytes, rng, sha256, startFaultServer, startKilnd, tempDir, testSeed } from './helpers.js';

const SEED = testSeed(4242);
const INSTANCES = 8;
const FETCHES_PER_IMAGE = 10;
const LIGHT = 54;
const MiB = 1024 * 1024;

t.test(`${2 * INSTANCES + 3 * FETCHES_PER_IMAGE + LIGHT} concurrent mixed requests: expected answers only, one download per image`, async (t) => {
  const random = rng(SEED);
  const server = await startFaultServer();
  t.teardown(() => server.close());
  const work = tempDir(t, 'kiln-rel-load-');
  const kilnd = await startKilnd(t);
  // Three images of different kinds; throttled so requests for one really overlap its download.
  const images = [
    { path: '/a.qcow2', data: qcow2Bytes(work, 'a.qcow2', '64M') },
    { path: '/b.qcow2', data: qcow2Bytes(work, 'b.qcow2', '96M', 2) },
    { path: '/c.raw', data: patternBytes(3 * MiB, 9) },
  ].map((i) => ({ ...i, url: server.add(i.path, { data: i.data, faults: { bytesPerSecond: 8 * MiB } }), checksum: `sha256:${sha256(i.data)}` }));

  type Job = { kind: string; run: () => Promise<{ status: number; text: string }>; ok: (s: number) => boolean };
  const jobs: Job[] = [];
  for (let i = 0; i < LIGHT; i++) {
    const path = ['/v1/status', '/v1/images', '/v1/instances', '/v1/health', '/metrics'][i % 5]!;
    jobs.push({ kind: `GET ${path}`, run: () => call(kilnd.socket, 'GET', path), ok: (s) => s === 200 });
  }
  for (const img of images) {
    for (let i = 0; i < FETCHES_PER_IMAGE; i++) {
      jobs.push({ kind: 'fetch', run: () => call(kilnd.socket, 'POST', '/v1/images', { url: img.url, checksum: img.checksum }), ok: (s) => s === 200 });
    }
  }
  for (let i = 0; i < INSTANCES; i++) {
    const img = images[i % 3]!;
    const name = `load-${i}`;
    // Each remove follows its own create; everything else runs at once around them.
    jobs.push({
      kind: 'create+remove',
      run: async () => {
        const c = await call(kilnd.socket, 'POST', '/v1/instances', { name, image: img.url, checksum: img.checksum, memory: 128 * MiB });
        if (c.status !== 201) return c;
        return call(kilnd.socket, 'DELETE', `/v1/instances/${name}`);
      },
      ok: (s) => s === 200,
    });
  }
  // A seeded shuffle: the order requests are issued in is reproducible.
  for (let i = jobs.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [jobs[i], jobs[j]] = [jobs[j]!, jobs[i]!];
  }
  const results = await Promise.all(jobs.map(async (j) => ({ j, r: await j.run().catch((e: Error) => ({ status: 0, text: e.message })) })));
  const bad = results.filter(({ j, r }) => !j.ok(r.status)).map(({ j, r }) => `${j.kind}: ${r.status} ${r.text.slice(0, 200)}`);
  t.same(bad, [], `all ${results.length} answers as expected`);
  for (const img of images) t.equal(server.fullGets(img.path), 1, `${img.path} downloaded exactly once`);
  const digests = new Set(results.filter(({ j }) => j.kind === 'fetch').map(({ r }) => JSON.parse(r.text).digest));
  t.equal(digests.size, 3, 'three images');
  t.same((await call(kilnd.socket, 'GET', '/v1/instances')).json, [], 'every instance was removed');
  t.same(await consistencyProblems(kilnd), [], 'the state dir is consistent');
  const cached = (await call(kilnd.socket, 'GET', '/v1/images')).json as Array<{ inUseBy: string[] }>;
  t.equal(cached.length, 3);
  t.ok(cached.every((i) => i.inUseBy.length === 0), 'no reference left behind');
  const metrics = (await call(kilnd.socket, 'GET', '/metrics')).text;
  t.notMatch(metrics, /kiln_api_errors_total\{code="KILN_INTERNAL"\}/, 'no internal error was counted');
});

t.test('a disk being made keeps its image reference while another create sweeps stale references', async (t) => {
  const server = await startFaultServer();
  t.teardown(() => server.close());
  const work = tempDir(t, 'kiln-rel-refs-');
  const kilnd = await startKilnd(t);
  // 128 MiB of data: its flat copy takes long enough for a second create to run meanwhile.
  const data = qcow2Bytes(work, 'big.qcow2', '256M', 128);
  const checksum = `sha256:${sha256(data)}`;
  t.equal((await call(kilnd.socket, 'POST', '/v1/images', { url: server.add('/big.qcow2', { data }), checksum })).status, 200);
  const slowTarget = `${work}/slow.qcow2`;
  let slowDone = false;
  const slow = call(kilnd.socket, 'POST', '/v1/disks', { target: slowTarget, image: checksum, mode: 'flat' }).finally(() => (slowDone = true));
  const holders = async () => ((await call(kilnd.socket, 'GET', `/v1/images/${checksum}`)).json as { inUseBy: string[] }).inUseBy;
  while (!(await holders()).includes(`disk:${slowTarget}`) && !slowDone) await new Promise((r) => setTimeout(r, 20));
  const quick = await call(kilnd.socket, 'POST', '/v1/disks', { target: `${work}/quick.qcow2`, image: checksum, mode: 'overlay' });
  t.equal(quick.status, 201, quick.text.slice(0, 200));
  const during = await holders();
  t.notOk(slowDone, 'the flat copy was still running when the overlay was made');
  t.ok(during.includes(`disk:${slowTarget}`), `the copy in flight kept its reference (${during.join(', ')})`);
  t.equal((await slow).status, 201);
  t.same(await holders(), [`disk:${work}/quick.qcow2`], 'the finished flat copy released it; the overlay holds one');
  t.same(await consistencyProblems(kilnd, { diskDirs: [work] }), []);
});
