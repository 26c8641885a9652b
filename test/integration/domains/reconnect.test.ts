// Reconnection after libvirtd restarts, against a private libvirtd (session mode, as nobody,
// no hypervisor drivers loaded) that serves libvirt's test driver over its own unix socket, so
// the shared system daemon is never touched. Killing it must fire the close callback; the next
// call reconnects lazily and lifecycle events flow again on the new connection.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { LibvirtHypervisor } from '../../../agent/domains/libvirt-hypervisor.js';
import { domainXml } from '../../../agent/domains/xml.js';
import type { LifecycleEvent } from '../../../agent/domains/hypervisor.js';
import { makeSpec, waitForEvent } from './helpers.js';

const NOBODY = 65534;

async function until(what: string, timeoutMs: number, probe: () => boolean | Promise<boolean>): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function startDaemon(dir: string): ChildProcess {
  const child = spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'env', '-i', 'PATH=/usr/sbin:/usr/bin',
    `HOME=${dir}/home`, `XDG_RUNTIME_DIR=${dir}/run`, `LIBVIRT_DRIVER_DIR=${dir}/drivers`, 'libvirtd', '--timeout', '0'], { stdio: 'ignore' });
  return child;
}

t.test('libvirtd restart: close callback, lazy reconnect, events re-subscribed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-lvd-'));
  for (const d of ['run', 'home', 'drivers']) mkdirSync(join(dir, d));
  for (const d of [dir, join(dir, 'run'), join(dir, 'home'), join(dir, 'drivers')]) chownSync(d, NOBODY, NOBODY);
  chmodSync(join(dir, 'run'), 0o700);
  const sock = join(dir, 'run', 'libvirt', 'libvirt-sock');
  let daemon = startDaemon(dir);
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => { lines.push(JSON.parse(s) as Record<string, unknown>); } });
  const hv = new LibvirtHypervisor(`test+unix:///default?socket=${sock}`, log, { keepaliveInterval: 1 });
  t.teardown(async () => {
    await hv.close();
    daemon.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    rmSync(dir, { recursive: true, force: true });
  });
  await until('the private libvirtd socket', 10_000, () => existsSync(sock));
  await hv.connect();
  t.equal((await hv.state('test')).state, 'running', "served by the private daemon's test driver");
  t.equal(hv.eventSource, 'events');

  // Kill the daemon: the connection's close callback fires from libvirt's event loop.
  const exited = new Promise((r) => daemon.once('exit', r));
  daemon.kill('SIGKILL');
  await exited;
  await until('the close callback', 10_000, () => lines.some((l) => l.msg === 'libvirt closed the connection'));
  const closed = lines.find((l) => l.msg === 'libvirt closed the connection')!;
  t.match(String(closed.reason), /eof|keepalive|error/, `close reason reported: ${String(closed.reason)}`);
  t.equal(await hv.isAlive(), false, 'not alive while the daemon is down');

  rmSync(sock, { force: true });
  daemon = startDaemon(dir);
  await until('the restarted libvirtd', 10_000, () => existsSync(sock));
  t.equal((await hv.state('test')).state, 'running', 'the next call reconnected by itself');
  t.equal(hv.reconnects, 1, 'one reconnection');
  t.ok(lines.some((l) => l.msg === 'libvirt connection lost; reconnecting'), 'logged');

  const spec = makeSpec();
  const defined = waitForEvent<LifecycleEvent>((e) => e.name === spec.name && e.event === 'started', 5000);
  const off = hv.onLifecycle(defined.sink);
  await hv.define(domainXml(spec));
  await hv.start(spec.name);
  t.equal((await defined.done).state, 'running', 'lifecycle events flow on the new connection');
  off();
  t.ok((await hv.listKiln()).some((d) => d.name === spec.name), 'domains tracked by name on the new connection');
  await hv.destroy(spec.name);
  await hv.undefine(spec.name);
});
