#!/usr/bin/env node
// Owns: the `kiln` command tree: global options, registering one file per command, exit codes.
// Must not: implement commands (commands/*.ts) or talk HTTP (client.ts).
import { Command, CommanderError } from 'commander';
import { kilnVersion } from '../version.js';
import { ERROR_CODES, KilnError } from '../errors.js';
import { makeContext } from './context.js';
import { Output } from './output.js';
import { COMMANDS } from './commands/index.js';

const program = new Command('kiln')
  .description('kiln: operator CLI of the kiln boot agent (images, cache, disks, seeds, instances)')
  .version(kilnVersion())
  .option('--socket <path>', 'kilnd socket (default /run/kiln/kiln.sock, or KILN_SOCKET_PATH)')
  .option('--host <ssh://user@host[:port]>', 'reach a remote kilnd through SSH stream-local forwarding (or KILN_HOST); --socket then names the remote socket')
  .option('--json', 'print one JSON document on stdout (errors too)')
  .showHelpAfterError()
  .exitOverride()
  .addHelpText('after', `
Exit codes:
${Object.entries(ERROR_CODES).map(([code, spec]) => `  ${String(spec.exit).padStart(2)}  ${code}`).join('\n')}`);

// ssh2 is loaded only when --host is used.
const ctx = makeContext(program, async (host, socket) => (await import('./ssh-transport.js')).sshClient(host, socket));
for (const command of COMMANDS) command.register(program, ctx);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    if (e.exitCode === 0) process.exit(0);
    // commander already printed its usage message on stderr; --json callers also get the document.
    const json = process.argv.includes('--json');
    if (json) new Output({ json }).error(new KilnError('KILN_BAD_REQUEST', e.message));
    process.exitCode = ERROR_CODES.KILN_BAD_REQUEST.exit;
  } else {
    process.exitCode = new Output({ json: process.argv.includes('--json') }).error(e);
  }
}
