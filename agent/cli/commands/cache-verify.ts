// Owns: `kiln cache verify`. Must not: do anything but ask the daemon and print.
import type { Command } from 'commander';
import type { VerifyJson } from '../../api/areas/images.js';
import { KilnError } from '../../errors.js';
import type { CliContext } from '../context.js';
import { action } from '../run-action.js';
import { cacheGroup } from './cache-group.js';

export function register(program: Command, ctx: CliContext): void {
  cacheGroup(program)
    .command('verify')
    .description('re-hash and re-inspect every cached image; quarantine the bad ones')
    .addHelpText('after', `
Exits non-zero (KILN_IMAGE_UNSAFE) when any image failed. Failed images that an instance disk
still uses are reported and left in place.

Examples:
  kiln cache verify
  kiln --json cache verify | jq .quarantined`)
    .action(action(ctx, async (out) => {
      const client = await ctx.client();
      const bar = out.progress();
      const res = await client.request<VerifyJson>('POST', '/v1/cache/verify', undefined, bar ? (e) => bar(e) : undefined);
      if (bar) process.stderr.write('\n');
      out.result(res, (r: VerifyJson) =>
        [
          ...r.ok.map((d) => `ok           ${d}`),
          ...r.quarantined.map((q) => `quarantined  ${q.digest}: ${q.reason}`),
          ...(r.failedInUse ?? []).map((q) => `FAILED       ${q.digest} (in use by ${q.inUseBy.join(', ')}): ${q.reason}`),
        ].join('\n') || 'no cached images',
      );
      const bad = r(res);
      if (bad) process.exitCode = new KilnError('KILN_IMAGE_UNSAFE', `${bad} image(s) failed verification`).exitCode;
    }));
}

function r(res: VerifyJson): number {
  return res.quarantined.length + (res.failedInUse?.length ?? 0);
}
