// Owns: `kiln instance stop NAME [--force]`. Must not: do anything but ask the daemon and print.
import type { Command } from 'commander';
import type { InstanceJson } from '../../api/protocol.js';
import type { CliContext } from '../context.js';
import { action } from '../run-action.js';
import { instanceGroup } from './instance-group.js';

export function register(program: Command, ctx: CliContext): void {
  instanceGroup(program)
    .command('stop')
    .description('shut an instance down (ACPI, then destroy after the grace time); --force destroys at once')
    .argument('<name>', 'instance name')
    .option('--force', 'power off immediately')
    .addHelpText('after', '\nExamples:\n  kiln instance stop web-1\n  kiln instance stop --force web-1')
    .action(action(ctx, async (out, name: string, o: { force?: boolean }) => {
      const client = await ctx.client();
      const i = await client.request<InstanceJson>('POST', `/v1/instances/${encodeURIComponent(name)}/stop`, o.force ? { force: true } : undefined);
      out.result(i, (x: InstanceJson) => `${x.name}: ${x.state}`);
    }));
}
