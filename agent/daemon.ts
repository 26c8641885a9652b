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
import { join } from 'node:path';
import { QemuImg } from './tools/qemu-img.js';
import { ImageCache } from './images/cache.js';
import { DiskService } from './disks/service.js';
import { checkSizes } from './disks/size-policy.js';
import { StandaloneDisks } from './disks/standalone.js';
import { buildSeed, writeSeedFile } from './seed/index.js';
import { domainXml } from './domains/xml.js';
import { LibvirtHypervisor } from './domains/libvirt-hypervisor.js';
import { resolveDomainType } from './domains/host.js';
import { AgentKeys, waitForCloudInit } from './readiness/index.js';
import { InstanceService } from './instances/service.js';
import { kilnVersion } from './version.js';

export interface Daemon {
  readonly services: ApiServices;
  readonly server: Server;
  close(reason?: string): Promise<void>;
}

export async function wireServices(config: KilnConfig, log: Logger): Promise<{ services: ApiServices; closers: Array<() => Promise<void> | void> }> {
  const closers: Array<() => Promise<void> | void> = [];
  try {
    const layout = stateLayout(config.stateDir);
    const metrics = new MetricsRegistry();
    const qemuImg = QemuImg.fromConfig(config, undefined, log);
    const images = new ImageCache({ layout, config, log, metrics, qemuImg });
    await images.init();
    closers.push(() => images.close());
    const disks = new DiskService({ qemuImg, config, log });
    const hypervisor = new LibvirtHypervisor(config.libvirtUri, log);
    closers.push(() => hypervisor.close());
    // kilnd serves even while libvirt is down (status says so); the connection reopens on demand.
    await hypervisor.connect().catch((e: unknown) => log.error({ err: e, uri: config.libvirtUri }, 'libvirt is not reachable yet'));
    const domainType = resolveDomainType(config.domainType);
    const agentKeys = await AgentKeys.load(join(layout.root, 'keys'));
    const instances = new InstanceService({
      config, instancesDir: layout.instances, log, metrics, images, disks, checkSizes,
      seed: { build: (spec) => buildSeed(spec, { maxFileBytes: config.seedMaxFileBytes }), write: writeSeedFile },
      domainXml, hypervisor, domainType: () => domainType, waitForCloudInit, agentKeys, kilnVersion: kilnVersion(),
    });
    closers.push(() => instances.close());
    await instances.reconcile().catch((e: unknown) => log.error({ err: e }, 'reconciling instances failed'));
    const system = new System(config, {
      libvirt: async () => ({ ...(await hypervisor.status()), domainType }),
      cache: () => images.stats(),
      instances: () => instances.count(),
    });
    // Cache size for /metrics: the registry renders synchronously, so a timer keeps it current.
    let cacheStats = await images.stats().catch(() => ({ count: 0, bytes: 0 }));
    metrics.gauge('kiln_cache_bytes', 'Bytes of images in the cache', () => [[{}, cacheStats.bytes]]);
    metrics.gauge('kiln_cache_images', 'Images in the cache', () => [[{}, cacheStats.count]]);
    const statsTimer = setInterval(() => {
      images.stats().then((s) => (cacheStats = s), () => undefined);
    }, 10_000).unref();
    closers.push(() => clearInterval(statsTimer));
    const standaloneDisks = new StandaloneDisks({ images, disks, config, log });
    // A kill during `kiln disk create` leaves a reference and a part file: drop both now.
    await standaloneDisks.dropStaleReferences().catch((e: unknown) => log.warn({ err: e }, 'could not check standalone disk references'));
    return { services: { system, metrics, instances, disks: standaloneDisks, images }, closers };
  } catch (e) {
    for (const close of closers.reverse()) await Promise.resolve(close()).catch(() => undefined);
    throw e;
  }
}

export async function startDaemon(config: KilnConfig, log: Logger): Promise<Daemon> {
  const layout = stateLayout(config.stateDir);
  ensureStateLayout(layout);
  const lock: StateLock = lockStateDir(layout);
  let server: Server | undefined;
  let closers: Array<() => Promise<void> | void> = [];
  let watchdog: NodeJS.Timeout | undefined;
  try {
    const wired = await wireServices(config, log);
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
