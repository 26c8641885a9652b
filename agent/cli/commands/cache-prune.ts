// Owns: `kiln cache prune [--max-bytes N] [--older-than DUR]`. Must not: do anything but ask the daemon and print.
import type { Command } from 'commander';
import type { PruneJson } from '../../api/areas/images.js';
import { formatSize, parseDuration, parseSize } from '../../config/units.js';
import type { CliContext } from '../context.js';
import { action } from '../run-action.js';
import { cacheGroup } from './cache-group.js';

export function register(program: Command, ctx: CliContext): void {
  cacheGroup(program)
    .command('prune')
    .description('evict unused images, least recently used first; never one an instance disk uses')
    .option('--max-bytes <size>', 'evict until the cache holds at most this much (default: kilnd cacheMaxBytes)')
    .option('--older-than <duration>', 'evict images unused for longer than this (30d, 12h)')
    .addHelpText('after', `
With neither option (and no cacheMaxBytes configured), every unused image is evicted.

Examples:
  kiln cache prune --max-bytes 50G
  kiln cache prune --older-than 30d
  kiln --json cache prune --older-than 7d | jq .freedBytes`)
    .action(action(ctx, async (out, o: { maxBytes?: string; olderThan?: string }) => {
      const body: { maxBytes?: number; olderThanMs?: number } = {};
      if (o.maxBytes !== undefined) body.maxBytes = parseSize(o.maxBytes, '--max-bytes');
      if (o.olderThan !== undefined) body.olderThanMs = parseDuration(o.olderThan, '--older-than');
      const client = await ctx.client();
      const res = await client.request<PruneJson>('POST', '/v1/cache/prune', body);
      out.result(res, (r: PruneJson) =>
        r.removed.length ? [...r.removed.map((d) => `removed ${d}`), `freed ${formatSize(r.freedBytes)}`].join('\n') : 'nothing to prune',
      );
    }));
}
