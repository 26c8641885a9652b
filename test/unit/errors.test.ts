import t from 'tap';
import { readFileSync } from 'node:fs';
import { ERROR_CODES, KilnError, fromWire, toKilnError } from '../../agent/errors.js';

t.test('every code has a unique exit status and a valid HTTP status', async (t) => {
  const exits = Object.values(ERROR_CODES).map((c) => c.exit);
  t.equal(new Set(exits).size, exits.length, 'exit codes are unique');
  t.notOk((exits as number[]).includes(0), 'no error exits 0');
  for (const [code, spec] of Object.entries(ERROR_CODES)) {
    t.match(code, /^KILN_[A-Z_]+$/);
    t.ok(spec.http >= 400 && spec.http < 600, `${code} http ${spec.http}`);
    t.ok(spec.meaning.length > 10, `${code} has a meaning`);
  }
});

t.test('every code is documented in the README error table', async (t) => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  for (const code of Object.keys(ERROR_CODES)) t.match(readme, new RegExp(`\\| \`${code}\` \\|`), `${code} in README`);
});

t.test('KilnError round-trips over the wire', async (t) => {
  const e = new KilnError('KILN_IMAGE_UNSAFE', 'bad', { reasons: ['qcow2: backing file'] });
  t.equal(e.httpStatus, 422);
  t.equal(e.exitCode, ERROR_CODES.KILN_IMAGE_UNSAFE.exit);
  const back = fromWire(JSON.parse(JSON.stringify({ error: e.toJSON() })));
  t.equal(back?.code, 'KILN_IMAGE_UNSAFE');
  t.same(back?.details, { reasons: ['qcow2: backing file'] });
  t.equal(fromWire({ error: { code: 'NOPE' } }), undefined);
  t.equal(fromWire('x'), undefined);
});

t.test('toKilnError maps ENOSPC and passes KilnErrors through', async (t) => {
  const enospc = Object.assign(new Error('write failed'), { code: 'ENOSPC' });
  t.equal(toKilnError(enospc).code, 'KILN_NO_SPACE');
  const k = new KilnError('KILN_CONFLICT', 'x');
  t.equal(toKilnError(k), k);
  t.equal(toKilnError('boom').code, 'KILN_INTERNAL');
});
