import t from 'tap';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Hashers, formatChecksum, hashFileInto, parseChecksum } from '../../../agent/images/checksum.js';
import { isKilnError } from '../../../agent/errors.js';

function code(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    return isKilnError(e) ? e.code : 'other';
  }
}

t.test('parseChecksum accepts sha256/sha512, refuses weak ones unless allowed', async (t) => {
  const h256 = 'A'.repeat(64);
  t.same(parseChecksum(`sha256:${h256}`, { allowWeak: false }), { algo: 'sha256', hex: 'a'.repeat(64) });
  t.same(parseChecksum(`SHA-512:${'b'.repeat(128)}`, { allowWeak: false }), { algo: 'sha512', hex: 'b'.repeat(128) });
  t.equal(code(() => parseChecksum(`md5:${'c'.repeat(32)}`, { allowWeak: false })), 'KILN_CHECKSUM_ALGO');
  t.equal(code(() => parseChecksum(`sha1:${'c'.repeat(40)}`, { allowWeak: false })), 'KILN_CHECKSUM_ALGO');
  t.equal(parseChecksum(`md5:${'c'.repeat(32)}`, { allowWeak: true }).algo, 'md5');
  t.equal(code(() => parseChecksum('blake3:abcd', { allowWeak: true })), 'KILN_CHECKSUM_ALGO');
  t.equal(code(() => parseChecksum('sha256:abc', { allowWeak: false })), 'KILN_BAD_REQUEST');
  t.equal(code(() => parseChecksum(`sha256:${'g'.repeat(64)}`, { allowWeak: false })), 'KILN_BAD_REQUEST');
  t.equal(code(() => parseChecksum('nocolon', { allowWeak: false })), 'KILN_BAD_REQUEST');
  t.equal(formatChecksum({ algo: 'sha256', hex: 'ab' }), 'sha256:ab');
});

t.test('Hashers: sha256 always, plus the extra algorithm; reset starts over', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }), (parts) => {
      const h = new Hashers('sha512');
      h.update(Buffer.from('garbage'));
      h.reset();
      for (const p of parts) h.update(Buffer.from(p));
      const all = Buffer.concat(parts.map((p) => Buffer.from(p)));
      const d = h.digests();
      return d.sha256 === createHash('sha256').update(all).digest('hex') && d.sha512 === createHash('sha512').update(all).digest('hex');
    }),
  );
  t.same(Object.keys(new Hashers().digests()), ['sha256']);
});

t.test('hashFileInto hashes a prefix or the whole file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-hash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const data = Buffer.alloc(9 * 1024 * 1024 + 5, 7);
  data.write('kiln', 123);
  writeFileSync(join(dir, 'f'), data);
  const whole = new Hashers();
  t.equal(await hashFileInto(join(dir, 'f'), whole), data.length);
  t.equal(whole.digests().sha256, createHash('sha256').update(data).digest('hex'));
  const prefix = new Hashers();
  const seen: number[] = [];
  t.equal(await hashFileInto(join(dir, 'f'), prefix, 5 * 1024 * 1024 + 1, (n) => seen.push(n)), 5 * 1024 * 1024 + 1);
  t.equal(prefix.digests().sha256, createHash('sha256').update(data.subarray(0, 5 * 1024 * 1024 + 1)).digest('hex'));
  t.equal(seen.at(-1), 5 * 1024 * 1024 + 1, 'progress reaches the end');
});
