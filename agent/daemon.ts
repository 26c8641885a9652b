// Owns: wiring every service of kilnd (the one place dependencies are built and passed in) and
// the daemon's lifecycle: lock the state dir, serve the socket, notify systemd, shut down cleanly.
// Must not: parse argv or install signal handlers (main.ts does), hold module-level singletons.
import type { Server } from 'node:http';
import type { KilnConfig } from './config/schema.js';
import type { Logger } from './log.js';
import { MetricsRegistry } from './metrics.js';
import { createApiServer } from './api/server.js';
import { listenOnSocket, removeSocket } from './api/socket.js';
import type { ApiServices } from './api/dispatch.js';
import { ensureStateLayout, lockStateDir, stateLayout, type StateLock } from './statedir.js';
import { System } from './system.js';
import { sdNotify, watchdogIntervalMs } from '../native/sd-notify.js';

export interface Daemon {
  readonly services: ApiServices;
  readonly server: Server;
  close(reason?: string): Promise<void>;
}

export function wireServices(config: KilnConfig, _log: Logger): { services: ApiServices; closers: Array<() => Promise<void> | void> } {
  const metrics = new MetricsRegistry();
  const system = new System(config, {});
  return { services: { system, metrics }, closers: [] };
}

export async function startDaemon(config: KilnConfig, log: Logger): Promise<Daemon> {
  const layout = stateLayout(config.stateDir);
  ensureStateLayout(layout);
  const lock: StateLock = lockStateDir(layout);
  let server: Server | undefined;
  let closers: Array<() => Promise<void> | void> = [];
  let watchdog: NodeJS.Timeout | undefined;
  try {
    const wired = wireServices(config, log);
    closers = wired.closers;
    server = createApiServer({ services: wired.services, log, bodyMaxBytes: config.requestBodyMaxBytes });
    await listenOnSocket(server, config.socket, config.socketMode, config.socketGroup);
    const interval = watchdogIntervalMs();
    if (interval) watchdog = setInterval(() => sdNotify('WATCHDOG=1'), interval).unref();
    sdNotify(`READY=1\nSTATUS=serving on ${config.socket}\nMAINPID=${process.pid}`);
    log.info({ socket: config.socket, stateDir: config.stateDir, libvirtUri: config.libvirtUri, pid: process.pid }, 'kilnd ready');
    const srv = server;
    let closing: Promise<void> | undefined;
    return {
      services: wired.services,
      server: srv,
      close(reason = 'shutdown') {
        closing ??= (async () => {
          sdNotify(`STOPPING=1\nSTATUS=${reason}`);
          log.info({ reason }, 'kilnd stopping');
          if (watchdog) clearInterval(watchdog);
          const closed = new Promise<void>((resolve) => srv.close(() => resolve()));
          srv.closeIdleConnections();
          const timer = setTimeout(() => srv.closeAllConnections(), config.shutdownTimeout).unref();
          await closed;
          clearTimeout(timer);
          removeSocket(config.socket);
          for (const close of closers.reverse()) await close();
          lock.release();
          log.info('kilnd stopped');
        })();
        return closing;
      },
    };
  } catch (e) {
    if (watchdog) clearInterval(watchdog);
    server?.close();
    for (const close of closers.reverse()) await close();
    lock.release();
    throw e;
  }
}
