// Child process of crash.test.ts: runs one ImageCache.ensure on a state dir and reports progress
// as JSON lines on stdout, so the parent can kill -9 it at a chosen moment.
// Usage: node fetch-child.ts STATE_DIR URL CHECKSUM [CONFIG_OVERRIDES_JSON]
import { silentLogger } from '../../../agent/log.js';
import { MetricsRegistry } from '../../../agent/metrics.js';
import { ensureStateLayout, stateLayout } from '../../../agent/statedir.js';
import { QemuImg } from '../../../agent/tools/qemu-img.js';
import { ImageCache } from '../../../agent/images/cache.js';
import { testConfig } from './helpers.js';

const [stateDir, url, checksum, overrides] = process.argv.slice(2) as [string, string, string, string | undefined];
const layout = stateLayout(stateDir);
ensureStateLayout(layout);
const config = testConfig(stateDir, overrides ? (JSON.parse(overrides) as Record<string, unknown>) : {});
const cache = new ImageCache({ layout, config, log: silentLogger(), metrics: new MetricsRegistry(), qemuImg: QemuImg.fromConfig(config) });
await cache.init();
process.stdout.write(JSON.stringify({ step: 'started' }) + '\n');
const image = await cache.ensure({ url, checksum }, (e) => process.stdout.write(JSON.stringify(e) + '\n'));
process.stdout.write(JSON.stringify({ step: 'result', digest: image.digest }) + '\n');
await cache.close();
