// Owns: the command line of the corpus generator: writes every case into a folder plus
// manifest.json (name, rule, kind, expectation). Must not: hold case definitions (corpus.ts does).
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { QemuImg } from '../../agent/tools/qemu-img.js';
import { buildCorpus } from './corpus.js';

const dir = resolve(process.argv[2] ?? 'build/corpus');
const qemuImg = new QemuImg({ addressSpaceBytes: 2 * 1024 ** 3, cpuSeconds: 30, inspectTimeoutMs: 60_000, convertTimeoutMs: 600_000 });
const cases = await buildCorpus(dir, qemuImg);
await writeFile(join(dir, 'manifest.json'), JSON.stringify(cases, null, 2) + '\n');
const count = (kind: string) => cases.filter((c) => c.kind === kind).length;
process.stdout.write(`${cases.length} cases (${count('malicious')} malicious, ${count('benign')} benign) in ${dir}\n`);
