import t from 'tap';
import { KilnError } from '../../../agent/errors.js';
import { fingerprint, parseNetwork, resolveSpec, specDifferences } from '../../../agent/instances/spec.js';
import { NameLock, Semaphore } from '../../../agent/instances/locks.js';
import { PortAllocator } from '../../../agent/instances/ports.js';

const config = { defaultMemory: 1 << 30, defaultVcpus: 1, defaultNetwork: 'user', diskMode: 'overlay' };

t.test('resolveSpec applies defaults and validates', async (t) => {
  const s = resolveSpec({ name: 'a', image: 'https://x/y.img' }, config);
  t.same(s.disk, { mode: 'overlay', sizeBytes: null, device: null });
  t.equal(s.memory, 1 << 30);
  t.same(s.network, { kind: 'user' });
  t.same(resolveSpec({ name: 'a', image: 'sha256:abcdef' }, config).image.ref, 'sha256:abcdef');
  const bad = (r: object) => {
    try {
      resolveSpec({ name: 'a', image: 'https://x/y', ...r }, config);
      return 'accepted';
    } catch (e) {
      return (e as KilnError).code;
    }
  };
  t.equal(bad({ image: 'ftp://x' }), 'KILN_BAD_REQUEST');
  t.equal(bad({ image: 'sha256:xyz' }), 'KILN_BAD_REQUEST');
  t.equal(bad({ bootVolume: '/etc/passwd' }), 'KILN_BAD_REQUEST');
  t.equal(bad({ bootVolume: '/dev/sdb', diskMode: 'flat' }), 'KILN_BAD_REQUEST');
  t.equal(bad({ sshKey: 'not a key' }), 'KILN_BAD_REQUEST');
  t.equal(bad({ network: 'bridge:' }), 'KILN_BAD_REQUEST');
  t.equal(bad({ network: 'a b' }), 'KILN_BAD_REQUEST');
  t.equal(bad({ sshKey: '# comment\nssh-rsa AAAA x\n\n' }), 'accepted');
});

t.test('fingerprints ignore key order and catch every difference', async (t) => {
  const a = resolveSpec({ name: 'a', image: 'https://x/y', userData: 'u', memory: 5 << 20 }, config);
  const b = resolveSpec({ memory: 5 << 20, userData: 'u', image: 'https://x/y', name: 'a' }, config);
  t.equal(fingerprint(a), fingerprint(b));
  const c = resolveSpec({ name: 'a', image: 'https://x/y', userData: 'v', memory: 5 << 20 }, config);
  t.not(fingerprint(a), fingerprint(c));
  t.same(specDifferences(a, c), ['userDataSha256']);
  t.same(parseNetwork('bridge:br0'), { kind: 'bridge', bridge: 'br0' });
  t.same(parseNetwork('default'), { kind: 'network', name: 'default' });
});

t.test('NameLock serializes one name, not others', async (t) => {
  const lock = new NameLock();
  const order: string[] = [];
  const job = (name: string, tag: string, ms: number) => lock.with(name, async () => {
    order.push(`${tag}+`);
    await new Promise((r) => setTimeout(r, ms));
    order.push(`${tag}-`);
  });
  await Promise.all([job('x', 'x1', 20), job('x', 'x2', 1), job('y', 'y1', 1)]);
  t.same(order.filter((o) => o.startsWith('x')), ['x1+', 'x1-', 'x2+', 'x2-']);
  t.ok(order.indexOf('y1-') < order.indexOf('x1-'), 'another name does not wait');
  t.notOk(lock.held('x'));
});

t.test('Semaphore bounds concurrency and survives failures', async (t) => {
  const sem = new Semaphore(3);
  let active = 0;
  let peak = 0;
  const work = (fail: boolean) => sem.with(async () => {
    active++;
    peak = Math.max(peak, active);
    await new Promise((r) => setTimeout(r, 5));
    active--;
    if (fail) throw new Error('x');
  });
  const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => work(i % 3 === 0)));
  t.equal(peak, 3);
  t.equal(sem.peak, 3);
  t.equal(results.filter((r) => r.status === 'rejected').length, 4);
  t.throws(() => new Semaphore(0));
});

t.test('PortAllocator skips taken, reserved and busy ports', async (t) => {
  const ports = new PortAllocator(5000, 5, async (p) => p !== 5002);
  t.equal(await ports.reserve([5000]), 5001);
  t.equal(await ports.reserve([5000]), 5003, '5001 reserved, 5002 busy');
  ports.release(5001);
  t.equal(await ports.reserve([]), 5000);
  t.equal(await ports.reserve([]), 5001);
  t.equal(await ports.reserve([]), 5004);
  const err = await ports.reserve([]).catch((e: KilnError) => e);
  t.equal((err as KilnError).code, 'KILN_CONFLICT', 'exhausted');
});
