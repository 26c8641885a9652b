import t from 'tap';
import { run, wrapArgv, tail } from '../../../agent/tools/run.js';
import { KilnError } from '../../../agent/errors.js';

async function failure(p: Promise<unknown>): Promise<KilnError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof KilnError) return e;
    throw e;
  }
  throw new Error('expected a failure');
}

t.test('argv arrays reach the program untouched (no shell)', async (t) => {
  const r = await run('printf', ['%s|', 'a b', '$(id)', ';rm -rf /', "'q'"], { timeoutMs: 5000 });
  t.equal(r.stdout, "a b|$(id)|;rm -rf /|'q'|");
  t.equal(r.exitCode, 0);
});

t.test('LC_ALL=C is forced', async (t) => {
  const r = await run('sh', ['-c', 'echo $LC_ALL'], { timeoutMs: 5000, env: { LC_ALL: 'de_DE.UTF-8' } });
  t.equal(r.stdout.trim(), 'C');
});

t.test('non-zero exit is KILN_TOOL_FAILED with the stderr tail', async (t) => {
  const e = await failure(run('sh', ['-c', 'echo oops >&2; exit 3'], { timeoutMs: 5000 }));
  t.equal(e.code, 'KILN_TOOL_FAILED');
  t.equal(e.details.exitCode, 3);
  t.equal(e.details.stderrTail, 'oops');
  const ok = await run('sh', ['-c', 'exit 2'], { timeoutMs: 5000, okExitCodes: [0, 2] });
  t.equal(ok.exitCode, 2);
});

t.test('a missing program is KILN_TOOL_MISSING, also behind prlimit', async (t) => {
  const e = await failure(run('kiln-no-such-program', [], { timeoutMs: 5000 }));
  t.equal(e.code, 'KILN_TOOL_MISSING');
  const e2 = await failure(run('kiln-no-such-program', [], { timeoutMs: 5000, limits: { cpuSeconds: 5 } }));
  t.equal(e2.code, 'KILN_TOOL_MISSING');
});

t.test('timeout kills the whole process group', async (t) => {
  const started = Date.now();
  const e = await failure(run('sh', ['-c', 'sleep 30 & sleep 30; wait'], { timeoutMs: 300 }));
  t.equal(e.code, 'KILN_TIMEOUT');
  t.ok(Date.now() - started < 5000, 'returned promptly');
});

t.test('resource limits are enforced by prlimit', async (t) => {
  t.same(wrapArgv('qemu-img', ['info'], { limits: { addressSpaceBytes: 2 ** 31, cpuSeconds: 30 }, niceness: 10 }), [
    'nice', '-n', '10', 'prlimit', '--as=2147483648', '--cpu=30', '--', 'qemu-img', 'info',
  ]);
  const r = await run('sh', ['-c', 'ulimit -v; ulimit -t'], { timeoutMs: 5000, limits: { addressSpaceBytes: 256 * 1024 * 1024, cpuSeconds: 7 } });
  t.same(r.stdout.trim().split('\n'), [String(256 * 1024), '7']);
  // A program that needs more address space than allowed fails instead of eating the host.
  const e = await failure(run('dd', ['if=/dev/zero', 'of=/dev/null', 'bs=512M', 'count=1'], { timeoutMs: 20_000, limits: { addressSpaceBytes: 128 * 1024 * 1024 } }));
  t.equal(e.code, 'KILN_TOOL_FAILED');
  t.match(String(e.details.stderrTail), /memory/i);
});

t.test('captured output is capped', async (t) => {
  const r = await run('head', ['-c', '100000', '/dev/zero'], { timeoutMs: 5000, maxOutputBytes: 1000 });
  t.equal(r.stdout.length, 1000);
});

t.test('stdin input and tail()', async (t) => {
  const r = await run('cat', [], { timeoutMs: 5000, input: 'hello' });
  t.equal(r.stdout, 'hello');
  t.equal(tail('x'.repeat(5000), 10), '…xxxxxxxxxx');
});

t.test('abort signal cancels', async (t) => {
  const ac = new AbortController();
  const p = run('sleep', ['30'], { timeoutMs: 60_000, signal: ac.signal });
  setTimeout(() => ac.abort(), 100);
  const e = await failure(p);
  t.equal(e.code, 'KILN_TOOL_FAILED');
  t.equal(e.details.cancelled, true);
});
