// Owns: `kiln image ls`. Must not: do anything but ask the daemon and print.
import type { Command } from 'commander';
import type { ImageJson } from '../../api/protocol.js';
import type { CliContext } from '../context.js';
import { action } from '../run-action.js';
import { imageGroup, renderImages } from './image-group.js';

export function register(program: Command, ctx: CliContext): void {
  imageGroup(program)
    .command('ls')
    .alias('list')
    .description('list cached images, most recently used first')
    .option('-q, --quiet', 'print digests only, one a line')
    .addHelpText('after', '\nExamples:\n  kiln image ls\n  kiln image ls -q\n  kiln --json image ls | jq -r \'.[] | select(.inUseBy == []) | .digest\'')
    .action(action(ctx, async (out, o: { quiet?: boolean }) => {
      const client = await ctx.client();
      const list = await client.request<ImageJson[]>('GET', '/v1/images');
      out.result(list, o.quiet ? (l: ImageJson[]) => l.map((i) => i.digest).join('\n') : renderImages);
    }));
}
