// Owns: the validators every API area uses to parse a request body into a typed action
// (unknown fields refused), and the instance-name rule.
// Must not: call services or touch the filesystem.
import { KilnError } from '../errors.js';

/** Fields of a JSON object body, with unknown-field rejection. */
export class BodyReader {
  private readonly seen = new Set<string>();
  private readonly obj: Record<string, unknown>;

  constructor(body: unknown, private readonly what = 'request body') {
    if (body === undefined) body = {};
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new KilnError('KILN_BAD_REQUEST', `${what} must be a JSON object`);
    }
    this.obj = body as Record<string, unknown>;
  }

  private take(key: string): unknown {
    this.seen.add(key);
    return this.obj[key];
  }

  string(key: string, opts: { required: true; max?: number; pattern?: RegExp }): string;
  string(key: string, opts?: { required?: false; max?: number; pattern?: RegExp }): string | undefined;
  string(key: string, opts: { required?: boolean; max?: number; pattern?: RegExp } = {}): string | undefined {
    const v = this.take(key);
    if (v === undefined || v === null) {
      if (opts.required) throw new KilnError('KILN_BAD_REQUEST', `${key} is required`, { field: key });
      return undefined;
    }
    if (typeof v !== 'string') throw new KilnError('KILN_BAD_REQUEST', `${key} must be a string`, { field: key });
    if (v.includes('\0')) throw new KilnError('KILN_BAD_REQUEST', `${key} must not contain NUL`, { field: key });
    if (v.length > (opts.max ?? 65536)) throw new KilnError('KILN_BAD_REQUEST', `${key} is too long`, { field: key });
    if (opts.pattern && !opts.pattern.test(v)) throw new KilnError('KILN_BAD_REQUEST', `${key} has an invalid value`, { field: key, pattern: String(opts.pattern) });
    return v;
  }

  number(key: string, opts: { min?: number; max?: number; integer?: boolean } = {}): number | undefined {
    const v = this.take(key);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || ((opts.integer ?? true) && !Number.isSafeInteger(v))) {
      throw new KilnError('KILN_BAD_REQUEST', `${key} must be a whole number`, { field: key });
    }
    if (opts.min !== undefined && v < opts.min) throw new KilnError('KILN_BAD_REQUEST', `${key} must be at least ${opts.min}`, { field: key });
    if (opts.max !== undefined && v > opts.max) throw new KilnError('KILN_BAD_REQUEST', `${key} must be at most ${opts.max}`, { field: key });
    return v;
  }

  bool(key: string): boolean | undefined {
    const v = this.take(key);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') throw new KilnError('KILN_BAD_REQUEST', `${key} must be true or false`, { field: key });
    return v;
  }

  oneOf<T extends string>(key: string, values: readonly T[]): T | undefined {
    const v = this.string(key);
    if (v === undefined) return undefined;
    if (!values.includes(v as T)) throw new KilnError('KILN_BAD_REQUEST', `${key} must be one of ${values.join(', ')}`, { field: key, allowed: values });
    return v as T;
  }

  /** Call last: any field not read is unknown and refused. */
  done(): void {
    const unknown = Object.keys(this.obj).filter((k) => !this.seen.has(k));
    if (unknown.length) throw new KilnError('KILN_BAD_REQUEST', `unknown field(s) in ${this.what}: ${unknown.join(', ')}`, { fields: unknown });
  }
}

/** Instance names: DNS-label-like, so they are safe as file names, domain names and hostnames. */
export const NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function checkName(name: string, field = 'name'): string {
  if (!NAME_PATTERN.test(name)) {
    throw new KilnError('KILN_BAD_REQUEST', `${field} "${name.slice(0, 80)}" is invalid: use 1-63 lowercase letters, digits and inner hyphens`, { field });
  }
  return name;
}
