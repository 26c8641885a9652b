import t from 'tap';
import { lstatSync, existsSync, mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient, unixSocketConnector } from '../../../agent/cli/client.js';
import { startKilnd, removeDir } from '../../fixtures/kilnd.js';
import type { HealthJson, StatusJson } from '../../../agent/api/protocol.js';

t.test('serves health and status on a 0660 socket, and cleans up on SIGTERM', async (t) => {
  const d = await startKilnd();
  t.teardown(() => removeDir(d.dir));
  const st = lstatSync(d.socket);
  t.ok(st.isSocket());
  t.equal(st.mode & 0o777, 0o660, 'socket mode 0660');
  t.equal(lstatSync(d.stateDir).mode & 0o777, 0o700, 'state dir private');
  const client = new ApiClient(unixSocketConnector(d.socket), d.socket);
  const health = await client.request<HealthJson>('GET', '/v1/health');
  t.equal(health.ok, true);
  t.match(health.version, /^\d+\.\d+\.\d+/);
  const status = await client.request<StatusJson>('GET', '/v1/status');
  t.equal(status.stateDir, d.stateDir);
  t.equal(status.pid, d.proc.pid);
  t.equal(readFileSync(join(d.stateDir, 'kilnd.lock'), 'utf8').trim(), String(d.proc.pid));
  const code = await d.stop();
  t.equal(code, 0, 'clean exit on SIGTERM');
  t.notOk(existsSync(d.socket), 'socket removed');
  t.match(d.output(), /"kilnd stopped"/);
});

t.test('a second kilnd on the same state dir is refused with KILN_LOCKED', async (t) => {
  const first = await startKilnd();
  t.teardown(async () => {
    await first.stop();
    removeDir(first.dir);
  });
  const second = await startKilnd({ dir: first.dir, waitReady: false, args: ['--socket', join(first.dir, 'other.sock')] });
  const code = await second.exited;
  t.equal(code, 21, 'exit code of KILN_LOCKED');
  t.match(second.output(), /KILN_LOCKED/);
  t.ok(existsSync(first.socket), 'the first daemon keeps its socket');
  const client = new ApiClient(unixSocketConnector(first.socket), first.socket);
  t.equal((await client.request<HealthJson>('GET', '/v1/health')).ok, true, 'first daemon still serves');
});

t.test('a live socket of another process is not stolen', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-live-'));
  t.teardown(() => removeDir(dir));
  const sock = join(dir, 'kiln.sock');
  const squatter = createServer(() => {});
  await new Promise<void>((r) => squatter.listen(sock, r));
  t.teardown(() => squatter.close());
  const d = await startKilnd({ dir, waitReady: false });
  t.equal(await d.exited, 21);
  t.match(d.output(), /another daemon is serving/);
  t.ok(existsSync(sock), 'the live socket is left alone');
});

t.test('a stale socket (after kill -9) is replaced', async (t) => {
  const first = await startKilnd();
  t.teardown(() => removeDir(first.dir));
  await first.kill();
  t.ok(existsSync(first.socket), 'kill -9 leaves the socket file behind');
  const second = await startKilnd({ dir: first.dir });
  const client = new ApiClient(unixSocketConnector(second.socket), second.socket);
  t.equal((await client.request<HealthJson>('GET', '/v1/health')).ok, true);
  t.equal(await second.stop(), 0);
});

t.test('a non-socket file at the socket path is never deleted', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-file-'));
  t.teardown(() => removeDir(dir));
  writeFileSync(join(dir, 'kiln.sock'), 'precious');
  const d = await startKilnd({ dir, waitReady: false });
  t.equal(await d.exited, 22, 'KILN_CONFIG');
  t.equal(readFileSync(join(dir, 'kiln.sock'), 'utf8'), 'precious');
});

t.test('bad configuration exits with KILN_CONFIG and names the problem', async (t) => {
  const d = await startKilnd({ waitReady: false, args: ['--log-level', 'loud'] });
  t.teardown(() => removeDir(d.dir));
  t.equal(await d.exited, 22);
  t.match(d.output(), /logLevel/);
  const e = await startKilnd({ waitReady: false, env: { KILN_STATEDIR: '/x' } });
  t.teardown(() => removeDir(e.dir));
  t.equal(await e.exited, 22);
  t.match(e.output(), /KILN_STATEDIR/);
});

t.test('unknown routes and methods answer with registry codes', async (t) => {
  const d = await startKilnd();
  t.teardown(async () => {
    await d.stop();
    removeDir(d.dir);
  });
  const client = new ApiClient(unixSocketConnector(d.socket), d.socket);
  await t.rejects(client.request('GET', '/v1/nope'), { code: 'KILN_NOT_FOUND' });
  await t.rejects(client.request('POST', '/v1/health', {}), { code: 'KILN_BAD_REQUEST' });
  await t.rejects(client.request('GET', '/v1/status?x=1', { surprise: true }), { code: 'KILN_BAD_REQUEST' });
  const metrics = await client.request<string>('GET', '/metrics');
  t.match(metrics, /kiln_api_errors_total\{code="KILN_NOT_FOUND"\} 1/);
});
