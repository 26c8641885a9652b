// Owns: the `kiln cache` command group, shared by the cache-*.ts commands. Must not: talk to the daemon.
import type { Command } from 'commander';

export function cacheGroup(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === 'cache') ??
    program
      .command('cache')
      .description('maintain the image cache (prune, verify)')
      .addHelpText('after', '\nExamples:\n  kiln cache prune --max-bytes 50G --older-than 30d\n  kiln cache verify')
  );
}
