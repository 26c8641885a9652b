// Owns: `kiln instance ls`. Must not: do anything but ask the daemon and print.
import type { Command } from 'commander';
import type { InstanceJson } from '../../api/protocol.js';
import type { CliContext } from '../context.js';
import { action } from '../run-action.js';
import { instanceGroup, renderInstances } from './instance-group.js';

export function register(program: Command, ctx: CliContext): void {
  instanceGroup(program)
    .command('ls')
    .alias('list')
    .description('list instances with their state')
    .option('-q, --quiet', 'print names only, one a line (for scripts and shell completion)')
    .addHelpText('after', '\nExamples:\n  kiln instance ls\n  kiln instance ls -q | xargs -n1 kiln instance stop\n  kiln --json instance ls | jq -r \'.[] | select(.state=="running") | .name\'')
    .action(action(ctx, async (out, o: { quiet?: boolean }) => {
      const client = await ctx.client();
      const list = await client.request<InstanceJson[]>('GET', '/v1/instances');
      out.result(list, o.quiet ? (l: InstanceJson[]) => l.map((i) => i.name).join('\n') : renderInstances);
    }));
}
