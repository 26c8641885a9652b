// The inspector on a real block device (a loop device over a file holding a raw disk with a GPT):
// its size comes from the device itself, reads stay bounded. A boot volume instance is inspected
// this way by `kiln disk inspect NAME`.
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspectFile } from '../../../agent/formats/inspect.js';
import { run } from '../../../agent/tools/run.js';
import { gpt, qcow2 } from '../../unit/formats/headers.js';

const MiB = 1024 * 1024;
const dir = await mkdtemp(join(tmpdir(), 'kiln-blockdev-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

async function withLoop(data: Buffer, fn: (dev: string) => Promise<void>): Promise<void> {
  const file = join(dir, `backing-${data.length}.img`);
  await writeFile(file, data);
  const dev = (await run('losetup', ['--find', '--show', '--read-only', file], { timeoutMs: 10_000 })).stdout.trim();
  try {
    await fn(dev);
  } finally {
    await run('losetup', ['--detach', dev], { timeoutMs: 10_000 });
  }
}

t.test('a GPT disk on a loop device: format gpt, size from the device', async (t) => {
  const disk = gpt(Buffer.alloc(24 * MiB));
  await withLoop(disk, async (dev) => {
    t.match(dev, /^\/dev\/loop\d+$/);
    const r = await inspectFile(dev);
    t.equal(r.format, 'gpt');
    t.equal(r.size, 24 * MiB, 'device size found by reading, not stat');
    t.equal(r.virtualSize, 24 * MiB);
    t.ok(r.bytesRead < 200 * 1024, `${r.bytesRead} bytes read`);
    t.equal(r.safe, true);
  });
});

t.test('a qcow2 with a backing file written onto a device is still refused', async (t) => {
  const img = Buffer.concat([qcow2({ backing: '/etc/shadow' }), Buffer.alloc(MiB)]);
  await withLoop(img, async (dev) => {
    const r = await inspectFile(dev);
    t.equal(r.format, 'qcow2');
    t.ok(r.reasons.some((x) => x.code === 'qcow2.backing_file'));
  });
});
