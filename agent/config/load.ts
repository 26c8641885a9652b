// Owns: turning the config file, KILN_* environment and command-line flags into one validated,
// frozen KilnConfig. Precedence: defaults < file < environment < flags. Unknown keys are errors.
// Must not: act on the config (open sockets, create folders); main.ts does that.
import { readFileSync } from 'node:fs';
import { KilnError } from '../errors.js';
import { CONFIG_SCHEMA, envName, flagName, type ConfigKey, type ConfigKeySpec, type KilnConfig } from './schema.js';
import { parseDuration, parseSize } from './units.js';

const KEYS = Object.keys(CONFIG_SCHEMA) as ConfigKey[];

function configError(message: string, details: Record<string, unknown>): KilnError {
  return new KilnError('KILN_CONFIG', message, details);
}

function coerce(key: ConfigKey, raw: unknown, source: string): unknown {
  const spec: ConfigKeySpec = CONFIG_SCHEMA[key];
  const where = `${key} (from ${source})`;
  const bad = (why: string) => configError(`invalid ${where}: ${why}`, { key, source, value: raw });
  switch (spec.type) {
    case 'string':
      if (typeof raw !== 'string') throw bad('expected a string');
      if (raw.includes('\0')) throw bad('contains a NUL byte');
      return raw;
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      if (typeof raw === 'string' && /^(1|true|yes|on)$/i.test(raw)) return true;
      if (typeof raw === 'string' && /^(0|false|no|off)$/i.test(raw)) return false;
      throw bad('expected true or false');
    case 'int': {
      let n: number;
      if (typeof raw === 'number') n = raw;
      else if (typeof raw === 'string' && /^0[0-7]+$/.test(raw)) n = parseInt(raw, 8);
      else if (typeof raw === 'string' && /^-?\d+$/.test(raw)) n = parseInt(raw, 10);
      else throw bad('expected a whole number');
      if (!Number.isSafeInteger(n)) throw bad('expected a whole number');
      return checkRange(n, spec, bad);
    }
    case 'size':
    case 'duration': {
      if (typeof raw !== 'string' && typeof raw !== 'number') throw bad(`expected a ${spec.type}`);
      let n: number;
      try {
        n = spec.type === 'size' ? parseSize(raw, key) : parseDuration(raw, key);
      } catch (e) {
        throw bad((e as Error).message);
      }
      return checkRange(n, spec, bad);
    }
    case 'enum':
      if (typeof raw !== 'string' || !spec.values!.includes(raw)) throw bad(`expected one of ${spec.values!.join(', ')}`);
      return raw;
    case 'list': {
      const items = typeof raw === 'string' ? raw.split(',').map((s) => s.trim()).filter(Boolean) : raw;
      if (!Array.isArray(items) || items.some((i) => typeof i !== 'string')) throw bad('expected a list of strings');
      const unknown = (items as string[]).filter((i) => spec.values && !spec.values.includes(i));
      if (unknown.length) throw bad(`unknown value(s) ${unknown.join(', ')}; allowed: ${spec.values!.join(', ')}`);
      return Object.freeze([...new Set(items as string[])]);
    }
  }
}

function checkRange(n: number, spec: ConfigKeySpec, bad: (why: string) => KilnError): number {
  if (spec.min !== undefined && n < spec.min) throw bad(`must be at least ${spec.min}`);
  if (spec.max !== undefined && n > spec.max) throw bad(`must be at most ${spec.max}`);
  return n;
}

export interface ConfigSources {
  /** Parsed JSON object from the config file. */
  file?: Record<string, unknown>;
  /** Environment (only KILN_* names are considered). */
  env?: NodeJS.ProcessEnv;
  /** Values keyed by config key, already taken from flags. */
  flags?: Partial<Record<string, unknown>>;
}

export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw configError(`cannot read config file ${path}: ${(e as Error).message}`, { path });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw configError(`config file ${path} is not valid JSON: ${(e as Error).message}`, { path });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw configError(`config file ${path} must hold a JSON object`, { path });
  }
  return parsed as Record<string, unknown>;
}

/** Environment variables that look like kilnd config but are not: typos must not pass silently. */
const NON_CONFIG_ENV = new Set(['KILN_CONFIG', 'KILN_SOCKET_PATH', 'KILN_HOST', 'KILN_JSON']);

export function loadConfig(sources: ConfigSources = {}): KilnConfig {
  const values: Record<string, unknown> = {};
  for (const key of KEYS) values[key] = CONFIG_SCHEMA[key].default;

  for (const [key, raw] of Object.entries(sources.file ?? {})) {
    if (!KEYS.includes(key as ConfigKey)) {
      throw configError(`unknown config key "${key}" in the config file`, { key, known: KEYS });
    }
    values[key] = coerce(key as ConfigKey, raw, 'file');
  }
  const byEnv = new Map(KEYS.map((k) => [envName(k), k] as const));
  for (const [name, raw] of Object.entries(sources.env ?? {})) {
    if (!name.startsWith('KILN_') || NON_CONFIG_ENV.has(name) || raw === undefined) continue;
    const key = byEnv.get(name);
    if (!key) throw configError(`unknown environment variable ${name}`, { env: name });
    values[key] = coerce(key, raw, `environment ${name}`);
  }
  for (const [key, raw] of Object.entries(sources.flags ?? {})) {
    if (raw === undefined) continue;
    if (!KEYS.includes(key as ConfigKey)) throw configError(`unknown option ${flagName(key)}`, { key });
    values[key] = coerce(key as ConfigKey, raw, `flag ${flagName(key)}`);
  }
  return Object.freeze(values) as KilnConfig;
}

/** Help text for `kilnd --help`: every key with its flag, environment name and default. */
export function configHelp(): string {
  return KEYS.map((key) => {
    const spec: ConfigKeySpec = CONFIG_SCHEMA[key];
    const def = Array.isArray(spec.default) ? spec.default.join(',') : String(spec.default);
    const values = spec.values && spec.type === 'enum' ? ` (${spec.values.join('|')})` : '';
    return `  ${flagName(key).padEnd(26)} ${envName(key).padEnd(30)} ${spec.help}${values} [default: ${def || '""'}]`;
  }).join('\n');
}
