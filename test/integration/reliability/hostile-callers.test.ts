// Hostile callers against a real kilnd over its real unix socket: who may connect (socket mode
// 0660 and a configurable group, tested with real users made by useradd and a connect attempt
// run as each of them with runuser), request body caps, and names and paths from requests that
// try to leave (or reach into) the state dir: `../`, absolute paths, NUL, very long names,
// symlinks. Nothing may be created or touched outside what kiln owns.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { call, consistencyProblems, qcow2Bytes, sha256, startFaultServer, startKilnd, tempDir, type HttpReply } from './helpers.js';

const GROUP = 'kilnrt-sock';
const OUTSIDER = 'kilnrt-out';
const MEMBER = 'kilnrt-in';

function ensureGroupAndUsers(): void {
  if (spawnSync('getent', ['group', GROUP]).status !== 0) execFileSync('groupadd', [GROUP]);
  if (spawnSync('id', [OUTSIDER]).status !== 0) execFileSync('useradd', ['-M', '-N', '-s', '/usr/sbin/nologin', OUTSIDER]);
  if (spawnSync('id', [MEMBER]).status !== 0) execFileSync('useradd', ['-M', '-N', '-G', GROUP, '-s', '/usr/sbin/nologin', MEMBER]);
}

function removeGroupAndUsers(): void {
  for (const u of [OUTSIDER, MEMBER]) spawnSync('userdel', [u]);
  spawnSync('groupdel', [GROUP]);
}

/** Runs a connect + GET /v1/health as `user` (a real process with that uid and its groups). */
function healthAs(user: string, socket: string): string {
  const script = `const r=require('http').request({socketPath:process.argv[1],path:'/v1/health'},(res)=>{let b='';res.on('data',(c)=>b+=c);res.on('end',()=>console.log('HTTP '+res.statusCode+' '+b.trim()))});r.on('error',(e)=>console.log('ERR '+e.code));r.end();`;
  // env -i: tap instruments node children through NODE_OPTIONS, which the other user cannot use.
  const r = spawnSync('env', ['-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'runuser', '-u', user, '--', process.execPath, '-e', script, socket], { encoding: 'utf8', timeout: 20_000 });
  return (r.stdout + r.stderr).trim();
}

ensureGroupAndUsers();
t.teardown(removeGroupAndUsers);

const dir = tempDir(t, 'kiln-rel-callers-');
// The folder is open to everyone, so only the socket's own mode and group decide who gets in.
chmodSync(dir, 0o755);
const kilnd = await startKilnd(t, { dir, args: ['--socket-group', GROUP, '--request-body-max-bytes', '8192'] });
const api = (method: string, path: string, body?: unknown, o?: Parameters<typeof call>[4]) => call(kilnd.socket, method, path, body, o);

function isError(t: Tap.Test, r: HttpReply, status: number, code: string, what = '') {
  t.equal(r.status, status, `${what} HTTP ${status} (${r.text.slice(0, 160)})`);
  t.equal(r.json?.error?.code, code, `${what} ${code}`);
}
declare namespace Tap { type Test = import('tap').Test }

t.test('the socket is 0660, owned by the configured group: others cannot connect, members can', async (t) => {
  const st = statSync(kilnd.socket);
  t.ok(st.isSocket());
  t.equal(st.mode & 0o777, 0o660, 'mode 0660');
  const gid = Number(execFileSync('getent', ['group', GROUP], { encoding: 'utf8' }).split(':')[2]);
  t.equal(st.gid, gid, `group ${GROUP}`);
  t.equal(st.uid, 0, 'owned by the daemon user');
  t.match(healthAs(OUTSIDER, kilnd.socket), /^ERR EACCES$/, 'a user outside the group is refused by the kernel');
  t.match(healthAs(MEMBER, kilnd.socket), /^HTTP 200 .*"ok":true/, 'a member of the socket group is served');
  t.equal((await api('GET', '/v1/health')).status, 200, 'root is served');
});

t.test('request bodies are capped (declared and streamed) and kilnd keeps serving', async (t) => {
  const name = 'x'.repeat(9000);
  isError(t, await api('POST', '/v1/images', { url: 'http://127.0.0.1:9/a', checksum: name }), 413, 'KILN_TOO_LARGE', 'declared length over the cap:');
  const streamed = await new Promise<string>((resolve) => {
    const req = request({ socketPath: kilnd.socket, method: 'POST', path: '/v1/images', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c));
      res.on('end', () => resolve(`${res.statusCode} ${text.includes('KILN_TOO_LARGE') ? 'KILN_TOO_LARGE' : text.slice(0, 80)}`));
      res.on('error', () => resolve('reset'));
    });
    req.on('error', () => resolve('reset'));
    let sent = 0;
    const pump = () => {
      while (sent++ < 64) if (!req.write('{"a":"' + 'y'.repeat(1024) + '",')) return void req.once('drain', pump);
      req.end();
    };
    pump();
  });
  t.equal(streamed, '413 KILN_TOO_LARGE', 'a chunked body over the cap is refused with a 413');
  isError(t, await api('POST', '/v1/instances', undefined, { raw: Buffer.from([0xff, 0xfe, 0x7b, 0x00]) }), 400, 'KILN_BAD_REQUEST', 'bytes that are not JSON:');
  t.equal((await api('GET', '/v1/health')).status, 200, 'still serving');
  t.equal(kilnd.proc.exitCode, null, 'kilnd is alive');
});

t.test('names and paths from requests never leave the state dir', async (t) => {
  const server = await startFaultServer();
  t.teardown(() => server.close());
  const work = tempDir(t, 'kiln-rel-paths-');
  const image = qcow2Bytes(work, 'base.qcow2', '32M');
  const url = server.add('/base.qcow2', { data: image });
  const checksum = `sha256:${sha256(image)}`;
  const fetched = await api('POST', '/v1/images', { url, checksum });
  t.equal(fetched.status, 200, fetched.text);
  const hex = sha256(image);

  const long = 'a'.repeat(5000);
  const badNames = ['..', '.', '../escape', '../../etc/cron.d/x', '/etc/passwd', 'a/b', 'a\\b', 'a\0b', '%2e%2e', 'A', '-a', 'a-', long, 'a'.repeat(64), 'é', ' a', 'a\nb', '.hidden'];
  for (const name of badNames) {
    isError(t, await api('POST', '/v1/instances', { name, image: url, checksum, memory: 128 << 20 }), 400, 'KILN_BAD_REQUEST', `create name ${JSON.stringify(name.slice(0, 20))}:`);
  }
  const badPaths = ['..%2F..%2Fetc', '%2E%2E', '..', '.', '%00', 'a%00b', encodeURIComponent('/etc/passwd'), 'a'.repeat(4000), '%2Fetc%2Fshadow', 'x%0Ay'];
  for (const p of badPaths) {
    for (const [method, suffix] of [['GET', ''], ['DELETE', ''], ['POST', '/start'], ['POST', '/stop']] as const) {
      const r = await api(method, `/v1/instances/${p}${suffix}`);
      t.ok(r.status === 400 || r.status === 404, `${method} /v1/instances/${p.slice(0, 20)}${suffix}: ${r.status}`);
      t.match(r.json?.error?.code, /^KILN_(BAD_REQUEST|NOT_FOUND)$/);
    }
    for (const method of ['GET', 'DELETE']) {
      const r = await api(method, `/v1/images/${p}`);
      t.ok(r.status === 400 || r.status === 404, `${method} /v1/images/${p.slice(0, 20)}: ${r.status}`);
    }
  }
  for (const ref of ['sha256:../../../etc/passwd', `sha256:${hex}/../../x`, `sha256:${hex}\0`, '../' + hex]) {
    isError(t, await api('GET', `/v1/images/${encodeURIComponent(ref)}`), 400, 'KILN_BAD_REQUEST', `image ref ${ref.slice(0, 24)}:`);
    isError(t, await api('POST', '/v1/disks', { target: join(work, 'x.qcow2'), image: ref }), 400, 'KILN_BAD_REQUEST', `disk image ref ${ref.slice(0, 24)}:`);
  }
  for (const c of [`sha256:${'0'.repeat(62)}/.`, 'sha256:../../etc', `../sha256:${hex}`, `sha256:${hex}\0`]) {
    const r = await api('POST', '/v1/images', { url, checksum: c });
    t.ok(r.status === 400, `checksum ${JSON.stringify(c.slice(0, 20))}: ${r.status} ${r.json?.error?.code}`);
  }
  for (const bootVolume of ['/etc/passwd', '/dev/../etc/shadow', 'relative', '/dev/null\0', `${kilnd.stateDir}/images/sha256/${hex}/disk`]) {
    const r = await api('POST', '/v1/instances', { name: 'bv', image: url, checksum, bootVolume, memory: 128 << 20 });
    t.equal(r.status, 400, `bootVolume ${bootVolume.slice(0, 40)}: ${r.json?.error?.code}`);
  }

  // Standalone disks name a path on purpose, but never an existing file, never a relative path,
  // never somewhere inside the state dir (directly, through '..', or through a symlink).
  const passwd = readFileSync('/etc/passwd');
  const link = join(work, 'into-cache');
  symlinkSync(join(kilnd.stateDir, 'images', 'sha256', hex), link);
  const linkState = join(work, 'into-state');
  symlinkSync(kilnd.stateDir, linkState);
  const disk = (target: string) => api('POST', '/v1/disks', { target, image: `sha256:${hex}` });
  isError(t, await disk('/etc/passwd'), 409, 'KILN_CONFLICT', 'an existing file:');
  t.same(readFileSync('/etc/passwd'), passwd, '/etc/passwd untouched');
  isError(t, await disk('relative/x.qcow2'), 400, 'KILN_BAD_REQUEST', 'a relative path:');
  isError(t, await disk('/tmp/x\0.qcow2'), 400, 'KILN_BAD_REQUEST', 'a NUL:');
  isError(t, await disk('/' + 'a'.repeat(5000)), 400, 'KILN_BAD_REQUEST', 'a very long path:');
  const intrusions = [
    join(kilnd.stateDir, 'images', 'sha256', hex, 'evil.qcow2'),
    join(work, '..', '..', ...kilnd.stateDir.split('/').filter(Boolean), 'images', 'x.qcow2'),
    join(link, 'evil.qcow2'),
    join(kilnd.stateDir, 'instances', 'ghost', 'disk.qcow2'),
    join(kilnd.stateDir, 'tmp', 'x.part'),
    join(linkState, 'instances', 'ghost2', 'disk.qcow2'),
  ];
  for (const target of intrusions) {
    const r = await disk(target);
    t.equal(r.status, 400, `${target.replace(work, 'WORK').replace(kilnd.stateDir, 'STATE')}: ${r.status} ${r.json?.error?.code} ${r.json?.error?.message ?? ''}`);
  }
  t.same(readdirSync(join(kilnd.stateDir, 'images', 'sha256', hex)).sort(), ['disk', 'meta.json', 'refs'], 'the image folder holds only its own files');
  t.same(readdirSync(join(kilnd.stateDir, 'instances')), [], 'no instance folder appeared');
  t.notOk(existsSync(join(kilnd.stateDir, 'tmp', 'x.part')));
  // A legitimate target outside the state dir still works.
  mkdirSync(join(work, 'disks'));
  const ok = await disk(join(work, 'disks', 'ok.qcow2'));
  t.equal(ok.status, 201, ok.text);
  t.equal(statSync(join(work, 'disks', 'ok.qcow2')).mode & 0o777, 0o600, 'the disk is private');
  t.same(await consistencyProblems(kilnd, { diskDirs: [join(work, 'disks')] }), [], 'the state dir is consistent');
});
