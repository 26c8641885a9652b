// Owns: `kiln instance rm NAME`. Must not: do anything but ask the daemon and print.
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { action } from '../run-action.js';
import { instanceGroup } from './instance-group.js';

export function register(program: Command, ctx: CliContext): void {
  instanceGroup(program)
    .command('rm')
    .alias('remove')
    .description('destroy and undefine an instance, delete its disk and seed, release its image')
    .argument('<name>', 'instance name')
    .addHelpText('after', '\nExamples:\n  kiln instance rm web-1\n  kiln instance ls -q | xargs -n1 kiln instance rm')
    .action(action(ctx, async (out, name: string) => {
      const client = await ctx.client();
      const r = await client.request<{ removed: string }>('DELETE', `/v1/instances/${encodeURIComponent(name)}`);
      out.result(r, (x: { removed: string }) => `removed ${x.removed}`);
    }));
}
