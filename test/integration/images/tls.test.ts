// HTTPS fetches: certificate verification is always on (a self-signed server is refused, not
// retried), and fetchCaBundle adds a trusted CA on top of the system's.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isKilnError } from '../../../agent/errors.js';
import { patternBytes } from '../../fixtures/fault-server.js';
import { makeCache, sha256 } from './helpers.js';

t.test('TLS verification is on; an extra CA bundle is trusted', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const data = patternBytes(512 * 1024, 31);
  let requests = 0;
  const server = createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (req, res) => {
    requests++;
    res.writeHead(200, { 'content-length': data.length, etag: '"tls-1"' });
    res.end(data);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/img.raw`;
  const checksum = `sha256:${sha256(data)}`;

  const plain = await makeCache(t);
  let code = 'resolved';
  let reason: unknown;
  try {
    await plain.cache.ensure({ url, checksum });
  } catch (e) {
    code = isKilnError(e) ? e.code : String(e);
    reason = isKilnError(e) ? e.details.reason : undefined;
  }
  t.equal(code, 'KILN_FETCH_FAILED', 'an untrusted certificate is refused');
  t.equal(reason, 'tls');
  t.equal(requests, 0, 'no request reached the server');

  const trusting = await makeCache(t, { fetchCaBundle: join(dir, 'cert.pem') });
  const img = await trusting.cache.ensure({ url, checksum });
  t.equal(img.digest, checksum, 'trusted through fetchCaBundle');
  t.equal(requests, 1);
});
