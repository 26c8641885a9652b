// Owns: `kiln image fetch URL --checksum ALGO:HEX`: sending the fetch request, showing its
// progress on a terminal, printing the cached image. Must not: download anything itself.
import type { Command } from 'commander';
import type { ImageJson } from '../../api/protocol.js';
import type { FetchImageBody } from '../../api/areas/images.js';
import { formatSize, parseSize } from '../../config/units.js';
import type { CliContext } from '../context.js';
import { keyValues } from '../output.js';
import { action } from '../run-action.js';
import { imageGroup } from './image-group.js';

interface FetchOptions {
  checksum?: string;
  diskFormat?: string;
  minDisk?: string;
  minRam?: string;
}

export function register(program: Command, ctx: CliContext): void {
  imageGroup(program)
    .command('fetch')
    .argument('<url>', 'http(s) URL of the image')
    .description('fetch an image once, verify its checksum while streaming, inspect it, cache it')
    .option('--checksum <algo:hex>', 'sha256:HEX or sha512:HEX (required unless kilnd runs with requireChecksum=false)')
    .option('--disk-format <fmt>', 'declared format (raw, qcow2, vmdk, iso, ...); a different detected format is refused')
    .option('--min-disk <size>', 'smallest root disk this image needs (512M, 20G)')
    .option('--min-ram <size>', 'smallest memory this image needs (512M, 2G)')
    .addHelpText('after', `
Concurrent fetches of one checksum share one download; an image already cached is answered
without any network access. Prints the digest, format, virtual size and path.

Examples:
  kiln image fetch https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2 \\
      --checksum sha512:6a1f... --disk-format qcow2 --min-disk 2G
  kiln --json image fetch http://10.0.0.5/tiny.img --checksum sha256:0d5e... | jq -r .path`)
    .action(action(ctx, async (out, url: string, o: FetchOptions) => {
      const body: FetchImageBody = { url };
      if (o.checksum) body.checksum = o.checksum;
      if (o.diskFormat) body.diskFormat = o.diskFormat;
      if (o.minDisk) body.minDisk = parseSize(o.minDisk, '--min-disk');
      if (o.minRam) body.minRam = parseSize(o.minRam, '--min-ram');
      const client = await ctx.client();
      const bar = out.progress();
      const image = await client.request<ImageJson>('POST', '/v1/images', body, bar ? (e) => bar(e) : undefined);
      if (bar) process.stderr.write('\n');
      out.result(image, (i: ImageJson) =>
        keyValues([
          ['digest', i.digest],
          ['format', i.format],
          ['virtual size', `${formatSize(i.virtualSize)} (${i.virtualSize} bytes)`],
          ['path', i.path],
        ]),
      );
    }));
}
