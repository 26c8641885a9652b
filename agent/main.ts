#!/usr/bin/env node
// Owns: the kilnd command line: flags (one per config key), --config, --help, --version, then
// startDaemon and the signal handling. Must not: wire services (daemon.ts does).
import { parseArgs } from 'node:util';
import { CONFIG_SCHEMA, flagName, type ConfigKey } from './config/schema.js';
import { configHelp, loadConfig, readConfigFile } from './config/load.js';
import { createLogger } from './log.js';
import { startDaemon } from './daemon.js';
import { KilnError, toKilnError } from './errors.js';
import { kilnVersion } from './version.js';

const KEYS = Object.keys(CONFIG_SCHEMA) as ConfigKey[];

function usage(): string {
  return `kilnd ${kilnVersion()}: the kiln boot agent and disk provisioner daemon

Usage: kilnd [--config FILE] [--state-dir DIR] [--socket PATH] [--libvirt-uri URI] [options]

Every option below can also be set in the JSON config file (camelCase key) or in the
environment (KILN_*). Precedence: defaults < file < environment < flags.

  --config FILE              KILN_CONFIG                    JSON config file
${configHelp()}
  --help, --version
`;
}

async function main(): Promise<void> {
  const options: Record<string, { type: 'string' | 'boolean' }> = { config: { type: 'string' }, help: { type: 'boolean' }, version: { type: 'boolean' } };
  for (const key of KEYS) options[flagName(key).slice(2)] = { type: 'string' };
  let parsed;
  try {
    parsed = parseArgs({ options, allowPositionals: false, strict: true });
  } catch (e) {
    throw new KilnError('KILN_CONFIG', `${(e as Error).message} (see kilnd --help)`);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help) {
    process.stdout.write(usage());
    return;
  }
  if (values.version) {
    process.stdout.write(`${kilnVersion()}\n`);
    return;
  }
  const flags: Record<string, unknown> = {};
  for (const key of KEYS) flags[key] = values[flagName(key).slice(2)];
  const configPath = (values.config as string | undefined) ?? process.env.KILN_CONFIG;
  const config = loadConfig({ file: configPath ? readConfigFile(configPath) : undefined, env: process.env, flags });
  const log = createLogger({ level: config.logLevel });
  const daemon = await startDaemon(config, log);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    daemon.close(`received ${signal}`).then(
      () => process.exit(0),
      (e) => {
        log.error({ err: e }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((e: unknown) => {
  const err = toKilnError(e);
  process.stderr.write(JSON.stringify({ level: 'fatal', msg: err.message, code: err.code, details: err.details }) + '\n');
  process.exit(err.exitCode);
});
