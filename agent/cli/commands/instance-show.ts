// Owns: `kiln instance show NAME`. Must not: do anything but ask the daemon and print.
import type { Command } from 'commander';
import type { InstanceJson } from '../../api/protocol.js';
import type { CliContext } from '../context.js';
import { action } from '../run-action.js';
import { instanceGroup, renderInstance } from './instance-group.js';

export function register(program: Command, ctx: CliContext): void {
  instanceGroup(program)
    .command('show')
    .alias('inspect')
    .description('show one instance: state, image, disk, seed, SSH endpoint, console log')
    .argument('<name>', 'instance name')
    .addHelpText('after', '\nExamples:\n  kiln instance show web-1\n  ssh -p "$(kiln --json instance show web-1 | jq .ssh.port)" root@127.0.0.1')
    .action(action(ctx, async (out, name: string) => {
      const client = await ctx.client();
      out.result(await client.request<InstanceJson>('GET', `/v1/instances/${encodeURIComponent(name)}`), renderInstance);
    }));
}
