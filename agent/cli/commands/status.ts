// Owns: `kiln status`. Must not: do anything but ask the daemon and print.
import type { Command } from 'commander';
import type { StatusJson } from '../../api/protocol.js';
import { formatSize } from '../../config/units.js';
import type { CliContext } from '../context.js';
import { keyValues } from '../output.js';
import { action } from '../run-action.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('status')
    .description('agent version, uptime, libvirt connection, cache size and count')
    .addHelpText('after', '\nExamples:\n  kiln status\n  kiln --json status | jq .cache')
    .action(action(ctx, async (out) => {
      const client = await ctx.client();
      const status = await client.request<StatusJson>('GET', '/v1/status');
      out.result(status, (s: StatusJson) =>
        keyValues([
          ['version', s.version],
          ['pid', s.pid],
          ['uptime', `${s.uptimeSeconds}s`],
          ['state dir', s.stateDir],
          ['socket', s.socket],
          ['libvirt', `${s.libvirt.uri} (${s.libvirt.connected ? 'connected' : `not connected${s.libvirt.error ? `: ${s.libvirt.error}` : ''}`})`],
          ['domain type', s.libvirt.domainType],
          ['cache', `${s.cache.count} image(s), ${formatSize(s.cache.bytes)}`],
          ['instances', s.instances.count],
        ]),
      );
    }));
}
