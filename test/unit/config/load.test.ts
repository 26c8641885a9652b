import t from 'tap';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configHelp, loadConfig, readConfigFile } from '../../../agent/config/load.js';
import { CONFIG_SCHEMA, envName, flagName } from '../../../agent/config/schema.js';
import { formatSize, parseDuration, parseSize } from '../../../agent/config/units.js';
import { KilnError } from '../../../agent/errors.js';

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (e) {
    return e instanceof KilnError ? e.code : 'not-a-KilnError';
  }
  return undefined;
};

t.test('defaults are complete and frozen', async (t) => {
  const c = loadConfig();
  t.equal(c.stateDir, '/var/lib/kiln');
  t.equal(c.socket, '/run/kiln/kiln.sock');
  t.equal(c.socketMode, 0o660);
  t.equal(c.libvirtUri, 'qemu:///system');
  t.ok(Object.isFrozen(c));
  t.throws(() => {
    (c as { stateDir: string }).stateDir = '/x';
  });
  for (const key of Object.keys(CONFIG_SCHEMA)) t.not((c as Record<string, unknown>)[key], undefined, `${key} has a value`);
});

t.test('precedence: defaults < file < env < flags', async (t) => {
  const c = loadConfig({
    file: { stateDir: '/from/file', logLevel: 'warn', fetchRetries: 2 },
    env: { KILN_STATE_DIR: '/from/env', KILN_FETCH_RETRIES: '3', PATH: '/bin' },
    flags: { stateDir: '/from/flag' },
  });
  t.equal(c.stateDir, '/from/flag');
  t.equal(c.fetchRetries, 3);
  t.equal(c.logLevel, 'warn');
});

t.test('types are coerced: sizes, durations, octal modes, bools, lists', async (t) => {
  const c = loadConfig({
    env: { KILN_FETCH_MAX_BYTES: '20G', KILN_FETCH_STALL_TIMEOUT: '5s', KILN_SOCKET_MODE: '0640', KILN_REQUIRE_CHECKSUM: 'no', KILN_ALLOWED_FORMATS: 'raw, qcow2,vhd' },
  });
  t.equal(c.fetchMaxBytes, 20 * 1024 ** 3);
  t.equal(c.fetchStallTimeout, 5000);
  t.equal(c.socketMode, 0o640);
  t.equal(c.requireChecksum, false);
  t.same([...c.allowedFormats], ['raw', 'qcow2', 'vhd']);
});

t.test('unknown keys, variables and flags are refused by name', async (t) => {
  t.equal(code(() => loadConfig({ file: { stateDri: '/x' } })), 'KILN_CONFIG');
  t.equal(code(() => loadConfig({ env: { KILN_STATEDIR: '/x' } })), 'KILN_CONFIG');
  t.equal(code(() => loadConfig({ flags: { nope: '1' } })), 'KILN_CONFIG');
  try {
    loadConfig({ file: { stateDri: '/x' } });
  } catch (e) {
    t.match((e as Error).message, /unknown config key "stateDri"/);
  }
});

t.test('bad values give clear KILN_CONFIG errors', async (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ logLevel: 'loud' }, /logLevel.*one of/],
    [{ fetchRetries: -1 }, /at least 0/],
    [{ fetchRetries: 'many' }, /whole number/],
    [{ fetchMaxBytes: '12 parsecs' }, /not a size/],
    [{ fetchStallTimeout: 'soon' }, /not a duration/],
    [{ requireChecksum: 'maybe' }, /true or false/],
    [{ allowedFormats: ['raw', 'qed'] }, /unknown value.*qed/],
    [{ stateDir: 42 }, /expected a string/],
    [{ stateDir: 'a\0b' }, /NUL/],
    [{ socketMode: 0o1777 }, /at most/],
  ];
  for (const [file, message] of cases) {
    try {
      loadConfig({ file });
      t.fail(`accepted ${JSON.stringify(file)}`);
    } catch (e) {
      t.equal((e as KilnError).code, 'KILN_CONFIG');
      t.match((e as Error).message, message);
    }
  }
});

t.test('config file: JSON object required', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const good = join(dir, 'good.json');
  writeFileSync(good, JSON.stringify({ stateDir: '/srv/kiln' }));
  t.same(readConfigFile(good), { stateDir: '/srv/kiln' });
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '{ nope');
  t.equal(code(() => readConfigFile(bad)), 'KILN_CONFIG');
  const arr = join(dir, 'arr.json');
  writeFileSync(arr, '[]');
  t.equal(code(() => readConfigFile(arr)), 'KILN_CONFIG');
  t.equal(code(() => readConfigFile(join(dir, 'missing.json'))), 'KILN_CONFIG');
});

t.test('names and help', async (t) => {
  t.equal(flagName('libvirtUri'), '--libvirt-uri');
  t.equal(envName('libvirtUri'), 'KILN_LIBVIRT_URI');
  const help = configHelp();
  for (const key of Object.keys(CONFIG_SCHEMA)) t.match(help, flagName(key));
});

t.test('units', async (t) => {
  t.equal(parseSize('512M'), 512 * 1024 ** 2);
  t.equal(parseSize('20G'), 20 * 1024 ** 3);
  t.equal(parseSize('1T'), 1024 ** 4);
  t.equal(parseSize('1.5K'), 1536);
  t.equal(parseSize('4096'), 4096);
  t.equal(parseSize(7), 7);
  t.equal(code(() => parseSize('-1G')), 'KILN_BAD_REQUEST');
  t.equal(code(() => parseSize('1Q')), 'KILN_BAD_REQUEST');
  t.equal(code(() => parseSize(1.5)), 'KILN_BAD_REQUEST');
  t.equal(parseDuration('500ms'), 500);
  t.equal(parseDuration('2m'), 120_000);
  t.equal(parseDuration('7d'), 7 * 86_400_000);
  t.equal(code(() => parseDuration('later')), 'KILN_BAD_REQUEST');
  t.equal(formatSize(512), '512 B');
  t.equal(formatSize(1536), '1.5 KiB');
  t.equal(formatSize(20 * 1024 ** 3), '20.0 GiB');
});
