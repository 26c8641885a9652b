// Owns: `kiln instance start NAME`. Must not: do anything but ask the daemon and print.
import type { Command } from 'commander';
import type { InstanceJson } from '../../api/protocol.js';
import type { CliContext } from '../context.js';
import { action } from '../run-action.js';
import { instanceGroup } from './instance-group.js';

export function register(program: Command, ctx: CliContext): void {
  instanceGroup(program)
    .command('start')
    .description('start a stopped instance (no-op when it runs)')
    .argument('<name>', 'instance name')
    .addHelpText('after', '\nExamples:\n  kiln instance start web-1')
    .action(action(ctx, async (out, name: string) => {
      const client = await ctx.client();
      const i = await client.request<InstanceJson>('POST', `/v1/instances/${encodeURIComponent(name)}/start`);
      out.result(i, (x: InstanceJson) => `${x.name}: ${x.state}`);
    }));
}
