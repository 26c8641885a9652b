// `kiln image fetch|ls|inspect|rm` and `kiln cache prune|verify` end to end: the built kiln
// binary against a real kilnd (test:///default) fetching from the fault server over loopback;
// human and --json output, and the registry's exit codes on refusals.
import t from 'tap';
import { ERROR_CODES } from '../../../agent/errors.js';
import { startKilnd } from '../api/harness.js';
import { runKiln } from '../../fixtures/kilnd.js';
import { FaultServer, patternBytes } from '../../fixtures/fault-server.js';
import { sha256 } from './helpers.js';

const kilnd = await startKilnd(t);
const server = await FaultServer.start();
t.teardown(() => server.close());

const kiln = (args: string[]) => runKiln(['--socket', kilnd.socket, ...args]);

const data = patternBytes(3 * 1024 * 1024, 4242);
const url = server.add('/cli.img', { data });
const hex = sha256(data);

t.test('fetch, ls, inspect, verify, prune, rm', async (t) => {
  const f = await kiln(['image', 'fetch', url, '--checksum', `sha256:${hex}`, '--min-disk', '1G', '--disk-format', 'raw']);
  t.equal(f.code, 0, f.stderr);
  t.match(f.stdout, new RegExp(`^digest: +sha256:${hex}$`, 'm'));
  t.match(f.stdout, /^format: +raw$/m);
  t.match(f.stdout, /^path: +\S+\/images\/sha256\/[0-9a-f]{64}\/disk$/m);

  const ls = await kiln(['image', 'ls']);
  t.equal(ls.code, 0);
  t.match(ls.stdout, /^DIGEST +FORMAT/m);
  t.match(ls.stdout, new RegExp(`^${hex.slice(0, 12)} +raw`, 'm'));
  const q = await kiln(['image', 'ls', '-q']);
  t.equal(q.stdout.trim(), `sha256:${hex}`);

  const insp = await kiln(['--json', 'image', 'inspect', hex.slice(0, 10)]);
  t.equal(insp.code, 0);
  const doc = JSON.parse(insp.stdout);
  t.match(doc, { digest: `sha256:${hex}`, format: 'raw', virtualSize: data.length, actualSize: data.length, sources: [url], minDisk: 1024 ** 3, minRam: 0, inUseBy: [] });
  t.match(doc, { safe: true, reasons: [], backingChain: [] }, 'inspect carries a fresh safety verdict');
  const human = await kiln(['image', 'inspect', hex.slice(0, 10)]);
  t.match(human.stdout, /^safe: +yes$/m);

  const v = await kiln(['--json', 'cache', 'verify']);
  t.equal(v.code, 0, v.stdout);
  t.same(JSON.parse(v.stdout).ok, [`sha256:${hex}`]);

  const p = await kiln(['cache', 'prune', '--older-than', '1d']);
  t.equal(p.code, 0);
  t.match(p.stdout, /nothing to prune/);

  const rm = await kiln(['image', 'rm', hex.slice(0, 12)]);
  t.equal(rm.code, 0, rm.stderr);
  const gone = await kiln(['--json', 'image', 'inspect', hex]);
  t.equal(gone.code, ERROR_CODES.KILN_NOT_FOUND.exit);
  t.match(JSON.parse(gone.stdout), { error: { code: 'KILN_NOT_FOUND' } });
});

t.test('refusals carry their exit codes', async (t) => {
  const weak = await kiln(['--json', 'image', 'fetch', url, '--checksum', 'md5:' + 'a'.repeat(32)]);
  t.equal(weak.code, ERROR_CODES.KILN_CHECKSUM_ALGO.exit);
  t.match(JSON.parse(weak.stdout), { error: { code: 'KILN_CHECKSUM_ALGO' } });
  const wrong = await kiln(['image', 'fetch', url, '--checksum', `sha256:${'0'.repeat(64)}`]);
  t.equal(wrong.code, ERROR_CODES.KILN_CHECKSUM_MISMATCH.exit);
  t.match(wrong.stderr, /KILN_CHECKSUM_MISMATCH/);
  const fmt = await kiln(['image', 'fetch', url, '--checksum', `sha256:${hex}`, '--disk-format', 'qcow2']);
  t.equal(fmt.code, ERROR_CODES.KILN_FORMAT_MISMATCH.exit);
  const size = await kiln(['image', 'fetch', url, '--checksum', `sha256:${hex}`, '--min-disk', 'lots']);
  t.equal(size.code, ERROR_CODES.KILN_BAD_REQUEST.exit);
});
