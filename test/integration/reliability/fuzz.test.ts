// Fuzz: fast-check (seeded, bounded runs) throws random JSON, random bytes and random path
// parameters at every route of a real kilnd over its unix socket. Every answer must be a 2xx or a
// 4xx carrying a registered error code; never a 5xx, never a dropped connection, never a crash;
// and nothing may appear in the state dir.
import t from 'tap';
import fc from 'fast-check';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROUTES } from '../../../agent/api/routes.js';
import { ERROR_CODES } from '../../../agent/errors.js';
import { call, startKilnd, testSeed } from './helpers.js';

const SEED = testSeed(20261127);
const RUNS = Number(process.env.RELIABILITY_FUZZ_RUNS ?? 400);
const kilnd = await startKilnd(t);

// Field names the areas know, so bodies often get past "unknown field" into the validators.
const FIELDS = ['name', 'image', 'checksum', 'diskFormat', 'minDisk', 'minRam', 'diskSize', 'diskMode', 'bootVolume', 'memory', 'vcpus',
  'userData', 'sshKey', 'networkConfig', 'seed', 'network', 'wait', 'sshUser', 'url', 'target', 'size', 'mode', 'force', 'maxBytes', 'olderThanMs'];
const nastyString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom('', '..', '../..', '/', '/etc/passwd', '\0', 'a\0b', '/dev/sda', '/dev/../etc/shadow', 'sha256:', `sha256:${'a'.repeat(64)}`,
    'sha512:zz', 'md5:00', 'file:///etc/passwd', 'ftp://x/y', 'user', 'bridge:../x', 'overlay', 'flat', 'volume', 'nocloud', 'ssh', 'running',
    '%2e%2e', 'é', '\u202e', 'x'.repeat(70_000), '-1', '1e400', 'NaN', 'null', '{}'),
  fc.string({ unit: 'binary', maxLength: 20 }),
).filter((s) => !/^https?:\/\/./i.test(s)); // a real URL would make a real (failing, 502) download: not what this tests
const value = fc.oneof(
  nastyString,
  fc.integer(), fc.double(), fc.constantFrom(-1, 0, 1, 2 ** 53, -(2 ** 53), 1e308, 16 << 20, 128 << 20),
  fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 2 }),
);
const body = fc.oneof(
  { weight: 5, arbitrary: fc.dictionary(fc.oneof(fc.constantFrom(...FIELDS), fc.string({ maxLength: 8 })), value, { maxKeys: 6 }).map((o) => ({ json: o })) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((j) => ({ json: j })) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b) => ({ raw: Buffer.from(b) })) },
  { weight: 1, arbitrary: fc.constant({}) },
);
const param = fc.oneof(
  fc.constantFrom('web-1', 'a', 'abc', 'deadbeef', 'sha256:abc', '..', '.', 'test', 'x'.repeat(300)),
  fc.string({ maxLength: 30 }).map((s) => encodeURIComponent(s)),
  fc.constantFrom('%00', '%2F', '..%2F..%2Fetc', '%ZZ', '%C0%AE', '%E2%80%AE'),
);
const routeReq = fc.record({
  route: fc.constantFrom(...ROUTES),
  params: fc.array(param, { minLength: 3, maxLength: 3 }),
  method: fc.oneof({ weight: 6, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS') }),
  body,
  query: fc.constantFrom('', '?x=1', '?force=true&a=%00'),
});

const seen = new Map<string, number>();
t.test(`${RUNS} random requests over every route: only 2xx or 4xx with a registered code`, async (t) => {
  await fc.assert(
    fc.asyncProperty(routeReq, async ({ route, params, method, body, query }) => {
      let i = 0;
      const path = route.pattern.split('/').map((seg) => (seg.startsWith(':') ? params[i++]! : seg)).join('/') + query;
      const m = method ?? route.method;
      const r = await call(kilnd.socket, m, path, 'json' in body ? body.json : undefined, 'raw' in body ? { raw: body.raw } : {});
      const key = `${r.status} ${r.json?.error?.code ?? ''}`.trim();
      seen.set(key, (seen.get(key) ?? 0) + 1);
      if (r.status >= 500 || r.status < 200 || (r.status >= 300 && r.status < 400)) throw new Error(`${m} ${path.slice(0, 100)} -> ${r.status} ${r.text.slice(0, 300)}`);
      if (r.status >= 400) {
        const code = r.json?.error?.code;
        if (typeof code !== 'string' || !(code in ERROR_CODES)) throw new Error(`${m} ${path.slice(0, 100)} -> ${r.status} without a registered code: ${r.text.slice(0, 200)}`);
        if (ERROR_CODES[code as keyof typeof ERROR_CODES].http !== r.status) throw new Error(`${code} answered with ${r.status}`);
      }
    }),
    { seed: SEED, numRuns: RUNS, endOnFailure: true },
  );
  t.comment(`answers: ${[...seen].sort().map(([k, n]) => `${k} x${n}`).join(', ')}`);
  t.ok([...seen.keys()].some((k) => k.startsWith('400')), 'validators were reached');
  t.equal((await call(kilnd.socket, 'GET', '/v1/health')).status, 200, 'kilnd still serves');
  t.equal(kilnd.proc.exitCode, null, 'kilnd did not crash');
  t.same(readdirSync(join(kilnd.stateDir, 'instances')), [], 'no instance folder was left');
  t.same(readdirSync(join(kilnd.stateDir, 'tmp')), [], 'nothing in tmp');
  t.notMatch(kilnd.log(), /request failed unexpectedly/, 'no KILN_INTERNAL in the log');
});
