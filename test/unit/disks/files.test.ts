import t from 'tap';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPartFile, ensurePrivateDir, isInside, publish, supportsDirectIo } from '../../../agent/disks/files.js';

function tmp(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'kiln-files-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

t.test('ensurePrivateDir creates only missing folders, 0700, and says which', async (t) => {
  const d = tmp(t);
  const created = await ensurePrivateDir(join(d, 'a', 'b'));
  t.same(created, [join(d, 'a'), join(d, 'a', 'b')]);
  t.equal(statSync(join(d, 'a', 'b')).mode & 0o777, 0o700);
  t.same(await ensurePrivateDir(join(d, 'a', 'b')), [], 'nothing new the second time');
  writeFileSync(join(d, 'f'), '');
  await t.rejects(ensurePrivateDir(join(d, 'f')), { code: 'KILN_BAD_REQUEST' });
});

t.test('part files are 0600 and publish never replaces a target', async (t) => {
  const d = tmp(t);
  const part = await createPartFile(join(d, 'disk'));
  t.equal(statSync(part).mode & 0o777, 0o600);
  writeFileSync(part, 'new');
  await publish(part, join(d, 'disk'));
  t.equal(readFileSync(join(d, 'disk'), 'utf8'), 'new');
  const again = await createPartFile(join(d, 'disk'));
  writeFileSync(again, 'other');
  await t.rejects(publish(again, join(d, 'disk')), { code: 'KILN_CONFLICT' });
  t.equal(readFileSync(join(d, 'disk'), 'utf8'), 'new', 'target untouched');
  t.same(readdirSync(d), ['disk'], 'part file removed either way');
});

t.test('O_DIRECT probe answers for the test folder and leaves no probe file', async (t) => {
  const d = tmp(t);
  // ext4 and (since Linux 6.6) tmpfs both take O_DIRECT; the integration tests rely on it here.
  t.equal(supportsDirectIo(d), true);
  t.same(readdirSync(d), []);
});

t.test('isInside is strict about prefixes', async (t) => {
  t.ok(isInside('/a/b/c', '/a/b'));
  t.notOk(isInside('/a/bc', '/a/b'));
  t.notOk(isInside('/a/b', '/a/b'));
});
