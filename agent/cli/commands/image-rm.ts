// Owns: `kiln image rm REF`. Must not: do anything but ask the daemon and print.
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { action } from '../run-action.js';
import { imageGroup } from './image-group.js';

export function register(program: Command, ctx: CliContext): void {
  imageGroup(program)
    .command('rm')
    .alias('remove')
    .argument('<ref>', 'sha256:HEX, or a unique prefix of the hex digest')
    .description('remove a cached image; refused (KILN_IN_USE) while an instance disk backs onto it')
    .addHelpText('after', '\nExamples:\n  kiln image rm 3f2a9c\n  kiln image ls -q | xargs -n1 kiln image rm   # removes the unused ones')
    .action(action(ctx, async (out, ref: string) => {
      const client = await ctx.client();
      const res = await client.request<{ removed: string }>('DELETE', `/v1/images/${encodeURIComponent(ref)}`);
      out.result(res, () => `removed ${ref}`);
    }));
}
