// Test helpers for the image cache: a private state dir, a config with quick retries, and an
// ImageCache built on real qemu-img and the real safety inspection.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../agent/config/load.js';
import type { KilnConfig } from '../../../agent/config/schema.js';
import { silentLogger } from '../../../agent/log.js';
import { MetricsRegistry } from '../../../agent/metrics.js';
import { ensureStateLayout, stateLayout, type StateLayout } from '../../../agent/statedir.js';
import { QemuImg } from '../../../agent/tools/qemu-img.js';
import { ImageCache, type Assessor } from '../../../agent/images/cache.js';

export interface CacheEnv {
  dir: string;
  layout: StateLayout;
  config: KilnConfig;
  metrics: MetricsRegistry;
  cache: ImageCache;
}

export const FAST_FETCH = { fetchRetries: 4, fetchRetryBackoff: 10, fetchStallTimeout: 1000, fetchConnectTimeout: 2000 };

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
export function sha512(b: Buffer): string {
  return createHash('sha512').update(b).digest('hex');
}

export function testConfig(stateDir: string, overrides: Record<string, unknown> = {}): KilnConfig {
  return loadConfig({ flags: { stateDir, ...FAST_FETCH, freeSpaceMargin: 0, ...overrides } });
}

/** The part of a tap test the helpers need. */
export interface Teardowns {
  teardown(fn: () => unknown): void;
}

export async function makeCache(t: Teardowns, overrides: Record<string, unknown> = {}, o: { dir?: string; assess?: Assessor } = {}): Promise<CacheEnv> {
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'kiln-img-'));
  if (!o.dir) t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const layout = stateLayout(join(dir, 'state'));
  ensureStateLayout(layout);
  const config = testConfig(layout.root, overrides);
  const metrics = new MetricsRegistry();
  const cache = new ImageCache({ layout, config, log: silentLogger(), metrics, qemuImg: QemuImg.fromConfig(config), ...(o.assess ? { assess: o.assess } : {}) });
  t.teardown(() => cache.close());
  await cache.init();
  return { dir, layout, config, metrics, cache };
}
