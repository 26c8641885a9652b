// Owns: choosing host ports for SSH forwards of user-mode networking: the first port from
// sshPortBase that no instance records, no provisioning in flight holds, and the host can bind.
// Must not: keep ports open; the guest's qemu binds the port when the domain starts.
import { createServer } from 'node:net';
import { KilnError } from '../errors.js';

export type PortProbe = (port: number) => Promise<boolean>;

/** True when 127.0.0.1:port can be bound right now. */
export const bindProbe: PortProbe = (port) =>
  new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => srv.close(() => resolve(true)));
  });

export class PortAllocator {
  private readonly reserved = new Set<number>();

  constructor(private readonly base: number, private readonly span = 1000, private readonly probe: PortProbe = bindProbe) {}

  /** Reserves a port; `taken` are the ports existing records hold. Call release() on failure. */
  async reserve(taken: Iterable<number>): Promise<number> {
    const busy = new Set(taken);
    const last = Math.min(65535, this.base + this.span - 1);
    for (let port = this.base; port <= last; port++) {
      if (busy.has(port) || this.reserved.has(port)) continue;
      this.reserved.add(port);
      if (await this.probe(port)) return port;
      this.reserved.delete(port);
    }
    throw new KilnError('KILN_CONFLICT', `no free SSH forward port in ${this.base}-${last}`, { base: this.base, last });
  }

  release(port: number): void {
    this.reserved.delete(port);
  }
}
