// `kiln seed build`: in-process through commander with a context whose client() fails (so the
// command provably needs no daemon), and once as the built binary; ISOs checked with isoinfo.
import t from 'tap';
import { Command } from 'commander';
import { PassThrough } from 'node:stream';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { register } from '../../../agent/cli/commands/seed-build.js';
import { Output } from '../../../agent/cli/output.js';
import type { CliContext } from '../../../agent/cli/context.js';
import { run } from '../../../agent/tools/run.js';
import { isoinfoDescribe, isoinfoExtract } from './readers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOq4rRBIPGYNg1ZCrEH7V5DsZLqoh7fz0Mp1rT6dCN3d kiln@test';
const dir = mkdtempSync(join(tmpdir(), 'kiln-seed-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string | Buffer) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

const UD = file('user-data', '#cloud-config\n#kiln-say from the cli\nruncmd: [[echo, hi]]\n');
const MD = file('meta-data', `instance-id: iid-cli-1\nlocal-hostname: cli-host\npublic-keys:\n  - ${KEY}\n`);

interface Result { code: number; stdout: string; stderr: string; json: any }

async function kiln(...args: string[]): Promise<Result> {
  let stdout = '';
  let stderr = '';
  const out = new PassThrough();
  const err = new PassThrough();
  out.on('data', (c: Buffer) => (stdout += c.toString()));
  err.on('data', (c: Buffer) => (stderr += c.toString()));
  const program = new Command('kiln').option('--json').exitOverride();
  const ctx: CliContext = {
    output: () => new Output({ json: Boolean(program.opts().json), stdout: out, stderr: err }),
    client: async () => {
      throw new Error('seed build must not need a daemon');
    },
  };
  register(program, ctx);
  const before = process.exitCode;
  await program.parseAsync(['node', 'kiln', ...args]);
  const code = Number(process.exitCode ?? 0);
  process.exitCode = before;
  await new Promise((r) => setImmediate(r));
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    json = undefined;
  }
  return { code, stdout, stderr, json };
}

t.test('nocloud: writes a private ISO that the tools read back', async (t) => {
  const out = join(dir, 'nocloud.iso');
  const r = await kiln('--json', 'seed', 'build', out, '--user-data', UD, '--meta-data', MD, '--timestamp', '2026-01-02T03:04:05Z');
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.equal(r.json.format, 'nocloud');
  t.equal(r.json.label, 'cidata');
  t.equal(r.json.instanceId, 'iid-cli-1');
  t.equal(r.json.bytes, statSync(out).size);
  t.same(r.json.files.map((f: { path: string }) => f.path), ['user-data', 'meta-data']);
  t.equal(statSync(out).mode & 0o777, 0o600, 'private to its owner');
  t.match(await isoinfoDescribe(out), /^Volume id: cidata$/m);
  t.equal(await isoinfoExtract(out, '-R', 'user-data'), readFileSync(UD, 'utf8'));
  t.equal(await isoinfoExtract(out, '-J', 'meta-data'), readFileSync(MD, 'utf8'), 'meta-data passes through byte for byte');
});

t.test('configdrive: meta-data mapped onto meta_data.json; network_data.json passes through', async (t) => {
  const out = join(dir, 'cd.iso');
  const nd = file('network_data.json', '{"links":[],"networks":[],"services":[]}');
  const r = await kiln('--json', 'seed', 'build', out, '--format', 'configdrive', '--user-data', UD, '--meta-data', MD, '--network-config', nd,
    '--uuid', '0B7C6F3E-1D4E-4C5A-9A57-3C2D1E0F9A8B');
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.equal(r.json.label, 'config-2');
  t.match(await isoinfoDescribe(out), /^Volume id: config-2$/m);
  const md = JSON.parse(await isoinfoExtract(out, '-R', 'openstack/latest/meta_data.json'));
  t.equal(md.uuid, '0b7c6f3e-1d4e-4c5a-9a57-3c2d1e0f9a8b');
  t.equal(md.hostname, 'cli-host');
  t.same(Object.values(md.public_keys), [KEY]);
  t.equal(await isoinfoExtract(out, '-J', 'openstack/2015-10-15/network_data.json'), readFileSync(nd, 'utf8'));
  t.equal(await isoinfoExtract(out, '-J', 'openstack/latest/user_data'), readFileSync(UD, 'utf8'));
});

t.test('reproducible: --timestamp or SOURCE_DATE_EPOCH fixes the bytes', async (t) => {
  const a = await kiln('--json', 'seed', 'build', join(dir, 'a.iso'), '--meta-data', MD, '--timestamp', '1700000000');
  const saved = process.env.SOURCE_DATE_EPOCH;
  process.env.SOURCE_DATE_EPOCH = '1700000000';
  t.teardown(() => {
    if (saved === undefined) delete process.env.SOURCE_DATE_EPOCH;
    else process.env.SOURCE_DATE_EPOCH = saved;
  });
  const b = await kiln('--json', 'seed', 'build', join(dir, 'b.iso'), '--meta-data', MD);
  t.equal(a.code, 0);
  t.equal(a.json.sha256, b.json.sha256, 'same sha256');
  t.ok(readFileSync(join(dir, 'a.iso')).equals(readFileSync(join(dir, 'b.iso'))));
  t.equal(await isoinfoExtract(join(dir, 'a.iso'), '-R', 'user-data'), '#cloud-config\n', 'default user-data');
});

t.test('bad inputs exit 2 with KILN_BAD_REQUEST and the reason; nothing is written', async (t) => {
  const out = join(dir, 'never.iso');
  const cases: Array<[string, string[], RegExp]> = [
    ['invalid YAML user-data', ['--user-data', file('bad-ud', '#cloud-config\nusers: [\n'), '--meta-data', MD], /not valid YAML/],
    ['network-config without version', ['--meta-data', MD, '--network-config', file('nc', 'ethernets: {}\n')], /no version key/],
    ['file over the cap', ['--meta-data', MD, '--user-data', file('big', '#!/bin/sh\n' + 'x'.repeat(4096)), '--max-file-size', '2K'], /over the size cap/],
    ['missing file', ['--meta-data', join(dir, 'nope')], /unreadable file/],
    ['meta-data without instance-id', ['--meta-data', file('md2', 'local-hostname: x\n')], /missing instance-id/],
    ['meta-data that is not YAML', ['--meta-data', file('md3', 'a: [\n')], /not valid YAML/],
    ['bad timestamp', ['--meta-data', MD, '--timestamp', 'yesterday'], /invalid date/],
  ];
  for (const [label, args, reason] of cases) {
    const r = await kiln('--json', 'seed', 'build', out, ...args);
    t.equal(r.code, 2, `${label}: exit 2`);
    t.equal(r.json?.error?.code, 'KILN_BAD_REQUEST', `${label}: code`);
    t.match(String(r.json?.error?.details?.reason), reason, `${label}: reason`);
  }
  t.notOk(existsSync(out), 'no ISO written');
  const human = await kiln('seed', 'build', out, '--meta-data', MD, '--network-config', file('nc2', 'ethernets: {}\n'));
  t.match(human.stderr, /network-config has no version key.*\[KILN_BAD_REQUEST\]/, 'human error line');
  t.equal(human.stdout, '');
  const unwritable = await kiln('--json', 'seed', 'build', join(dir, 'no-such-dir', 'x.iso'), '--meta-data', MD);
  t.equal(unwritable.json?.error?.code, 'KILN_BAD_REQUEST', 'output folder missing');
});

t.test('the built kiln binary builds a seed with no daemon running', async (t) => {
  const bin = join(ROOT, 'build/agent/cli/main.js');
  t.ok(existsSync(bin), 'build/agent/cli/main.js exists (scripts/setup builds it)');
  const out = join(dir, 'bin.iso');
  const r = await run(process.execPath, [bin, '--socket', join(dir, 'no.sock'), '--json', 'seed', 'build', out, '--user-data', UD, '--meta-data', MD], { timeoutMs: 60_000 });
  t.equal(JSON.parse(r.stdout).label, 'cidata');
  t.match(await isoinfoDescribe(out), /^Volume id: cidata$/m);
});

t.test('nocloud passes an operator meta-data through without re-checking fields kiln does not use', async (t) => {
  const md = file('md-loose', 'instance-id: iid-loose\nlocal-hostname: not_a_hostname\npublic-keys: {default: "whatever"}\n');
  const out = join(dir, 'loose.iso');
  const r = await kiln('--json', 'seed', 'build', out, '--meta-data', md);
  t.equal(r.code, 0, r.stdout);
  t.equal(await isoinfoExtract(out, '-R', 'meta-data'), readFileSync(md, 'utf8'));
  const cd = await kiln('--json', 'seed', 'build', join(dir, 'loose-cd.iso'), '--format', 'configdrive', '--meta-data', md);
  t.equal(cd.json?.error?.details?.reason, 'invalid hostname', 'config-drive rebuilds meta_data.json, so it checks');
});
