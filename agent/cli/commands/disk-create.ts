// Owns: `kiln disk create PATH|DEV --image REF [--size SIZE] [--mode overlay|flat]`: resolving
// PATH against the caller's folder, sending POST /v1/disks and printing the disk.
// Must not: make disks itself; kilnd does, with its own privileges and cache.
import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { formatSize, parseSize } from '../../config/units.js';
import type { StandaloneDiskJson } from '../../disks/standalone.js';
import type { CliContext } from '../context.js';
import { keyValues } from '../output.js';
import { action } from '../run-action.js';

interface DiskCreateOptions {
  image: string;
  size?: string;
  mode?: 'overlay' | 'flat';
}

export function buildDiskCreateBody(target: string, o: DiskCreateOptions, cwd = process.cwd()): { target: string; image: string; size?: number; mode?: 'overlay' | 'flat' } {
  const body: { target: string; image: string; size?: number; mode?: 'overlay' | 'flat' } = { target: resolve(cwd, target), image: o.image };
  if (o.size !== undefined) body.size = parseSize(o.size, '--size');
  if (o.mode) body.mode = o.mode;
  return body;
}

export function renderDisk(d: StandaloneDiskJson): string {
  return keyValues([
    [d.device ? 'device' : 'path', d.device ?? d.path],
    ['mode', d.mode],
    ['format', d.format],
    ['virtual size', `${formatSize(d.virtualSize)} (${d.virtualSize} bytes)`],
    ['image', d.image.digest],
    ['keeps base', d.holder ? `yes (reference ${d.holder})` : 'no'],
  ]);
}

function diskGroup(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === 'disk') ??
    program.command('disk').description('root disks and boot volumes from cached images (create, inspect)')
  );
}

export function register(program: Command, ctx: CliContext): void {
  diskGroup(program)
    .command('create')
    .description('materialize a disk from a cached image without booting anything')
    .argument('<target>', 'file to create (overlay or flat), or a block device under /dev (boot volume)')
    .requiredOption('--image <ref>', 'cached image: sha256:HEX or a unique prefix (see kiln image ls)')
    .option('--size <size>', 'disk size, e.g. 20G (default: the image size, or min_disk if larger); never below the image')
    .addOption(new Option('--mode <mode>', 'qcow2 overlay on the cached base, or a full flat copy (default from kilnd config); a /dev target is always a boot volume').choices(['overlay', 'flat']))
    .addHelpText('after', `
Examples:
  kiln disk create /var/lib/vms/web-1.qcow2 --image sha256:5d4140 --size 20G
  kiln disk create ./scratch.img --image 5d4140 --mode flat
  kiln disk create /dev/vg0/web-1 --image sha256:5d4140     # boot volume: size read from the device

An overlay keeps its base in the cache (reference disk:PATH) until the overlay file is deleted.
A boot volume must not be mounted or in use (KILN_IN_USE) and must hold the image (KILN_DISK_TOO_SMALL).`)
    .action(action(ctx, async (out, target: string, o: DiskCreateOptions) => {
      const body = buildDiskCreateBody(target, o);
      const client = await ctx.client();
      const bar = out.progress();
      const disk = await client.request<StandaloneDiskJson>('POST', '/v1/disks', body, bar ?? (() => undefined));
      if (bar) process.stderr.write('\n');
      out.result(disk, renderDisk);
    }));
}
