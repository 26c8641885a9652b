// Owns: what every CLI command receives: the output printer and a lazily connected API client
// chosen from --socket / --host / KILN_SOCKET_PATH. Must not: define commands.
import type { Command } from 'commander';
import { ApiClient, unixSocketConnector } from './client.js';
import { Output } from './output.js';

export const DEFAULT_SOCKET = '/run/kiln/kiln.sock';

export interface GlobalOptions {
  socket?: string;
  host?: string;
  json?: boolean;
}

export interface CliContext {
  output(): Output;
  client(): Promise<ApiClient>;
}

/** Remote transports register here (ssh://), keeping ssh2 out of the CLI's start-up path.
 * `socket` is the remote kilnd's socket path (--socket together with --host). */
export type RemoteConnector = (host: string, socket: string) => Promise<ApiClient>;

export function makeContext(program: Command, remote?: RemoteConnector): CliContext {
  const opts = () => program.opts<GlobalOptions>();
  return {
    output: () => new Output({ json: Boolean(opts().json) }),
    async client() {
      const { socket } = opts();
      const host = opts().host ?? process.env.KILN_HOST;
      if (host) {
        if (!remote) throw new Error('remote hosts are not supported in this build');
        return remote(host, socket ?? DEFAULT_SOCKET);
      }
      const path = socket ?? process.env.KILN_SOCKET_PATH ?? DEFAULT_SOCKET;
      return new ApiClient(unixSocketConnector(path), path);
    },
  };
}
