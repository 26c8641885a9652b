// `kiln disk create` end to end: the built kiln binary against a real kilnd (test:///default),
// an image fetched over loopback HTTP into its cache, overlay and flat disks, a boot volume on a
// loop device made here, refusals with their exit codes and JSON errors, and the cache refusing
// to drop a base an overlay made this way uses.
import t from 'tap';
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CODES } from '../../../agent/errors.js';
import { KILN, startImageServer, startKilnd, tempDir } from '../api/harness.js';
import { runKiln } from '../../fixtures/kilnd.js';
import { MiB, infoChain, loopDevice } from './helpers.js';

const kilnd = await startKilnd(t);
const images = await startImageServer(t);
const base = images.qcow2('disk-base.qcow2', '64M');
const work = tempDir(t, 'kiln-disk-cli-');

const kiln = (args: string[]) => runKiln(['--socket', kilnd.socket, ...args]);

const fetched = await kiln(['--json', 'image', 'fetch', base.url, '--checksum', base.checksum]);
t.equal(fetched.code, 0, fetched.stdout + fetched.stderr);
const digest = JSON.parse(fetched.stdout).digest as string;
const ref = digest.slice(0, 19);

t.test('overlay: human output, private file, chain into the daemon\'s cache', async (t) => {
  const target = join(work, 'vms', 'a.qcow2');
  const r = await kiln(['disk', 'create', target, '--image', ref, '--size', '256M']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, new RegExp(`^path: +${target}$`, 'm'));
  t.match(r.stdout, /^mode: +overlay$/m);
  t.match(r.stdout, /^virtual size: +256 MiB \(268435456 bytes\)$/m);
  t.match(r.stdout, /^keeps base: +yes/m);
  const chain = await infoChain(target, 'qcow2');
  t.equal(chain[0]!['backing-filename'], join(kilnd.stateDir, 'images', 'sha256', digest.slice(7), 'disk'));
  t.equal(chain[0]!['virtual-size'], 256 * MiB);
  t.equal(statSync(target).mode & 0o777, 0o600);

  const rm = await kiln(['--json', 'image', 'rm', digest]);
  t.equal(rm.code, ERROR_CODES.KILN_IN_USE.exit, 'kiln image rm refuses the base');
  t.match(JSON.parse(rm.stdout), { error: { code: 'KILN_IN_USE' } });
});

t.test('flat copy with --json; a relative PATH is where the operator stands', async (t) => {
  const r = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
    const p = spawn(process.execPath, [KILN, '--socket', kilnd.socket, '--json', 'disk', 'create', 'flat.qcow2', '--image', digest, '--mode', 'flat'], { cwd: work, stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d));
    p.on('close', (code) => resolve({ code, stdout }));
  });
  t.equal(r.code, 0);
  const doc = JSON.parse(r.stdout);
  t.match(doc, { path: join(work, 'flat.qcow2'), mode: 'flat', format: 'qcow2', virtualSize: 64 * MiB, image: { digest } });
  t.equal((await infoChain(doc.path, 'qcow2')).length, 1, 'no backing file');
});

t.test('refusals: exit codes and JSON details', async (t) => {
  const small = await kiln(['--json', 'disk', 'create', join(work, 'small.qcow2'), '--image', ref, '--size', '16M']);
  t.equal(small.code, ERROR_CODES.KILN_DISK_TOO_SMALL.exit);
  t.match(JSON.parse(small.stdout), { error: { code: 'KILN_DISK_TOO_SMALL', details: { requiredBytes: 64 * MiB, requestedBytes: 16 * MiB } } });
  const human = await kiln(['disk', 'create', join(work, 'small.qcow2'), '--image', ref, '--size', '16M']);
  t.match(human.stderr, /smaller than the image's virtual size .*\[KILN_DISK_TOO_SMALL\]/);
  const exists = await kiln(['disk', 'create', join(work, 'vms', 'a.qcow2'), '--image', ref]);
  t.equal(exists.code, ERROR_CODES.KILN_CONFLICT.exit, 'never overwrites');
  const bad = await kiln(['disk', 'create', join(work, 'x.qcow2'), '--image', ref, '--size', 'lots']);
  t.equal(bad.code, ERROR_CODES.KILN_BAD_REQUEST.exit);
  const help = await kiln(['disk', 'create', '--help']);
  t.match(help.stdout, /Examples:/);
});

t.test('boot volume on a loop device: size from the device', async (t) => {
  const { dev } = await loopDevice(t, work, 80 * MiB, 'cli-volume');
  const r = await kiln(['--json', 'disk', 'create', dev, '--image', ref]);
  t.equal(r.code, 0, r.stdout);
  t.match(JSON.parse(r.stdout), { device: dev, mode: 'volume', format: 'raw', virtualSize: 80 * MiB });
  const tiny = await loopDevice(t, work, 32 * MiB, 'cli-tiny');
  const refused = await kiln(['--json', 'disk', 'create', tiny.dev, '--image', ref]);
  t.equal(refused.code, ERROR_CODES.KILN_DISK_TOO_SMALL.exit);
  t.match(JSON.parse(refused.stdout), { error: { details: { requiredBytes: 64 * MiB, requestedBytes: 32 * MiB } } });
});
