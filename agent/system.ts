// Owns: the agent-wide answers of `kiln status` and `/v1/health`, assembled from probes that the
// wiring passes in (libvirt connection, cache totals, instance count).
// Must not: reach into services itself; a missing probe reports as not configured.
import type { HealthJson, StatusJson } from './api/protocol.js';
import type { KilnConfig } from './config/schema.js';
import { kilnVersion } from './version.js';

export interface StatusProbes {
  libvirt?: () => Promise<{ connected: boolean; domainType?: string; error?: string }>;
  cache?: () => Promise<{ count: number; bytes: number }>;
  instances?: () => Promise<{ count: number }>;
}

export class System {
  private readonly startedAt = Date.now();
  constructor(private readonly config: KilnConfig, private readonly probes: StatusProbes = {}) {}

  health(): HealthJson {
    return { ok: true, version: kilnVersion() };
  }

  async status(): Promise<StatusJson> {
    const [libvirt, cache, instances] = await Promise.all([
      this.probes.libvirt?.().catch((e: Error) => ({ connected: false, error: e.message })) ?? Promise.resolve({ connected: false, error: 'not configured' }),
      this.probes.cache?.() ?? Promise.resolve({ count: 0, bytes: 0 }),
      this.probes.instances?.() ?? Promise.resolve({ count: 0 }),
    ]);
    return {
      version: kilnVersion(),
      pid: process.pid,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      stateDir: this.config.stateDir,
      socket: this.config.socket,
      libvirt: { uri: this.config.libvirtUri, ...libvirt },
      cache,
      instances,
    };
  }
}
