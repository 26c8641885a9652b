// scripts/bench/provision: see the wrapper's header. Both sides provision the same image from
// the same cache: kiln through its API (image lookup and reference, overlay, seed ISO, define,
// start, state check, record writes), the baseline with qemu-img, cloud-localds and virsh,
// each a fresh process as an operator's script would run them. Runs alternate to share drift.
import { spawnSync, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' }, uri: { type: 'string', default: 'qemu:///system' }, memory: { type: 'string', default: '256' }, dir: { type: 'string', default: '/var/tmp' } } });
const runs = Number(values.runs);
const uri = values.uri;
const memory = Number(values.memory) * 1024 * 1024;
const repo = new URL('../../', import.meta.url).pathname;
const { domainXml } = await import(join(repo, 'build/agent/domains/xml.js'));

const work = mkdtempSync(join(values.dir, 'kiln-bench-provision-'));
const cleanups = [];
const cleanup = () => { for (const c of cleanups.reverse()) { try { c(); } catch { /* best effort */ } } rmSync(work, { recursive: true, force: true }); };
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

const sh = (cmd, args) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
};
const now = () => Number(process.hrtime.bigint()) / 1e6;
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };

// The image: a 1 GiB-virtual qcow2, served over loopback HTTP.
const imgPath = join(work, 'base.qcow2');
sh('qemu-img', ['create', '-q', '-f', 'qcow2', imgPath, '1G']);
const sha = createHash('sha256').update(readFileSync(imgPath)).digest('hex');
const server = createServer((req, res) => { res.writeHead(200, { 'content-length': statSync(imgPath).size }); createReadStream(imgPath).pipe(res); });
await new Promise((r) => server.listen(0, '127.0.0.1', r));
cleanups.push(() => server.close());
const url = `http://127.0.0.1:${server.address().port}/base.qcow2`;

// kilnd on its own state dir and socket.
const socket = join(work, 'kiln.sock');
const stateDir = join(work, 'state');
const kilnd = spawn(process.execPath, [join(repo, 'build/agent/main.js'), '--state-dir', stateDir, '--socket', socket, '--libvirt-uri', uri, '--log-level', 'warn', '--ssh-port-base', '42200'], { stdio: ['ignore', 'pipe', 'pipe'] });
let kilndLog = '';
kilnd.stdout.on('data', (d) => (kilndLog += d));
kilnd.stderr.on('data', (d) => (kilndLog += d));
kilnd.on('exit', (code, signal) => { if (!finished) { console.error(`bench/provision: kilnd exited (${code ?? signal}):\n${kilndLog.slice(-3000)}`); process.exit(1); } });
let finished = false;
cleanups.push(() => { finished = true; kilnd.kill('SIGKILL'); });
process.on('uncaughtException', (e) => { console.error(`bench/provision: ${e.stack}\nkilnd log:\n${kilndLog.slice(-3000)}`); process.exit(1); });
const call = (method, path, body) => new Promise((resolve, reject) => {
  const payload = body ? Buffer.from(JSON.stringify(body)) : undefined;
  const req = request({ socketPath: socket, method, path, headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {} }, (res) => {
    let text = '';
    res.on('data', (c) => (text += c));
    res.on('end', () => (res.statusCode >= 400 ? reject(new Error(`${method} ${path}: ${text}`)) : resolve(JSON.parse(text))));
  });
  req.on('error', reject);
  req.end(payload);
});
for (let i = 0; ; i++) {
  try { await call('GET', '/v1/health'); break; } catch (e) { if (i > 300) throw e; await new Promise((r) => setTimeout(r, 100)); }
}
const image = await call('POST', '/v1/images', { url, checksum: `sha256:${sha}` });
const basePath = image.path;

const userData = '#cloud-config\nruncmd: [echo kiln-bench]\n';
const sshKey = sh('bash', ['-c', `ssh-keygen -q -t ed25519 -N '' -f ${work}/k && cat ${work}/k.pub`]).trim();
const virsh = (...cmds) => (uri.startsWith('test:') ? [sh('virsh', ['-q', '-c', uri, cmds.map((c) => c.join(' ')).join(' ; ')])] : cmds.map((c) => sh('virsh', ['-q', '-c', uri, ...c])));

const kilnTimes = [];
const baseTimes = [];
const steps = {};
for (let i = 0; i < runs; i++) {
  // kiln: request -> response with the domain running (wait: running).
  const name = `bench-k-${process.pid}-${i}`;
  const t0 = now();
  const inst = await call('POST', '/v1/instances', { name, image: `sha256:${sha}`, memory, userData, sshKey, wait: 'running' });
  kilnTimes.push(now() - t0);
  if (inst.state !== 'running') throw new Error(`kiln instance ${name} is ${inst.state}`);
  const record = JSON.parse(readFileSync(join(stateDir, 'instances', name, 'record.json'), 'utf8'));
  for (const [k, v] of Object.entries(record.steps)) (steps[k] ??= []).push(v * 1000);
  await call('DELETE', `/v1/instances/${name}`);

  // Baseline: the same steps by hand, each a fresh process.
  const bname = `bench-b-${process.pid}-${i}`;
  const dir = join(work, bname);
  mkdirSync(dir, { mode: 0o700 });
  writeFileSync(join(dir, 'user-data'), userData);
  writeFileSync(join(dir, 'meta-data'), `instance-id: ${randomUUID()}\nlocal-hostname: ${bname}\npublic-keys:\n  - ${sshKey}\n`);
  const xml = domainXml({
    name: bname, uuid: randomUUID(), domainType: 'qemu', memoryBytes: memory, vcpus: 1,
    disk: { kind: 'file', path: join(dir, 'disk.qcow2'), format: 'qcow2' }, seed: { path: join(dir, 'seed.iso') },
    consoleLogPath: join(dir, 'console.log'), network: { kind: 'user', sshHostPort: 43200 + i },
    metadata: { instance: bname, imageDigest: image.digest, kilnVersion: 'baseline' },
  });
  writeFileSync(join(dir, 'domain.xml'), xml);
  const b0 = now();
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', basePath, '-F', 'qcow2', join(dir, 'disk.qcow2')]);
  sh('cloud-localds', [join(dir, 'seed.iso'), join(dir, 'user-data'), join(dir, 'meta-data')]);
  virsh(['define', join(dir, 'domain.xml')], ['start', bname]);
  baseTimes.push(now() - b0);
  if (!uri.startsWith('test:')) {
    const state = sh('virsh', ['-q', '-c', uri, 'domstate', bname]).trim();
    if (state !== 'running') throw new Error(`baseline domain ${bname} is ${state}`);
  }
  const drop = () => { for (const c of ['destroy', 'undefine']) spawnSync('virsh', ['-q', '-c', uri, c, bname]); };
  if (!uri.startsWith('test:')) { drop(); cleanups.push(drop); }
}

const k = median(kilnTimes);
const b = median(baseTimes);
console.log(`provision (cache hit, request -> domain running), ${runs} runs on ${uri}, memory ${values.memory} MiB`);
console.log(`  kiln API          median ${k.toFixed(1)} ms   (runs: ${kilnTimes.map((x) => x.toFixed(0)).join(', ')})`);
for (const [s, xs] of Object.entries(steps)) console.log(`    step ${s.padEnd(8)} median ${median(xs).toFixed(1)} ms`);
console.log(`  qemu-img + cloud-localds + virsh define + virsh start   median ${b.toFixed(1)} ms   (runs: ${baseTimes.map((x) => x.toFixed(0)).join(', ')})`);
console.log(`  ratio kiln/baseline: ${(k / b).toFixed(2)}`);
finished = true;
process.exit(0);
