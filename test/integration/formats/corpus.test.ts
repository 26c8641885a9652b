// The image safety corpus (scripts/corpus/corpus.ts), generated with real qemu-img and hand-
// crafted headers, run through images/safety.ts assessImage with real qemu-img as cross-check:
// every malicious case is refused with its code and reason, every benign one accepted.
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../agent/config/load.js';
import { isKilnError } from '../../../agent/errors.js';
import { assessImage, policyFromConfig } from '../../../agent/images/safety.js';
import { QemuImg } from '../../../agent/tools/qemu-img.js';
import { buildCorpus, type CorpusCase } from '../../../scripts/corpus/corpus.js';

const config = loadConfig({});
const qemuImg = QemuImg.fromConfig(config);
const dir = await mkdtemp(join(tmpdir(), 'kiln-corpus-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const cases: CorpusCase[] = await buildCorpus(dir, qemuImg);

t.test('every rule has at least one malicious and one benign case', async (t) => {
  const rules = new Set(cases.map((c) => c.rule));
  t.ok(rules.size >= 15, `${rules.size} rules covered`);
  for (const rule of rules) {
    t.ok(cases.some((c) => c.rule === rule && c.kind === 'malicious'), `${rule}: a malicious case`);
    t.ok(cases.some((c) => c.rule === rule && c.kind === 'benign'), `${rule}: a benign case`);
  }
  t.equal(new Set(cases.map((c) => c.name)).size, cases.length, 'case names are unique');
});

for (const c of cases) {
  t.test(`${c.kind} ${c.name} (${c.rule})`, async (t) => {
    const defaults = policyFromConfig(config);
    const policy = { allowedFormats: c.allowedFormats ?? defaults.allowedFormats, maxVirtualSize: c.maxVirtualSize ?? defaults.maxVirtualSize };
    const path = join(dir, c.name);
    const o = c.declaredFormat === undefined ? { policy, qemuImg } : { policy, qemuImg, declaredFormat: c.declaredFormat };
    if (c.expect.code === undefined) {
      t.equal(c.kind, 'benign');
      const a = await assessImage(path, o);
      t.equal(a.format, c.expect.format, 'detected format');
      t.ok(a.virtualSize > 0, 'virtual size known');
      return;
    }
    t.equal(c.kind, 'malicious');
    let caught: unknown;
    try {
      await assessImage(path, o);
    } catch (e) {
      caught = e;
    }
    t.ok(isKilnError(caught), `refused with a KilnError (${String(caught)})`);
    if (!isKilnError(caught)) return;
    t.equal(caught.code, c.expect.code, `code (${caught.message})`);
    const detected = caught.details.format ?? caught.details.detectedFormat;
    t.equal(detected, c.expect.format, 'detected format in details');
    if (c.expect.reason) {
      const reasons = caught.details.reasons as string[];
      t.ok(Array.isArray(reasons) && reasons.some((r) => r.startsWith(`${c.expect.reason}:`)), `reason ${c.expect.reason} in ${JSON.stringify(reasons)}`);
    }
  });
}
