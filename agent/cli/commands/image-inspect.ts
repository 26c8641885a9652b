// Owns: `kiln image inspect REF`. Must not: do anything but ask the daemon and print.
import type { Command } from 'commander';
import type { ImageJson } from '../../api/protocol.js';
import type { CliContext } from '../context.js';
import { action } from '../run-action.js';
import { imageGroup, renderImage } from './image-group.js';

export function register(program: Command, ctx: CliContext): void {
  imageGroup(program)
    .command('inspect')
    .argument('<ref>', 'sha256:HEX, or a unique prefix of the hex digest')
    .description('show one cached image: format, sizes, path, sources, minimums, users')
    .addHelpText('after', '\nExamples:\n  kiln image inspect 3f2a9c\n  kiln --json image inspect sha256:3f2a9c... | jq .inUseBy')
    .action(action(ctx, async (out, ref: string) => {
      const client = await ctx.client();
      const image = await client.request<ImageJson>('GET', `/v1/images/${encodeURIComponent(ref)}`);
      out.result(image, renderImage);
    }));
}
