// Shared by the domains tests: unique names, specs, and a helper asserting KilnError codes.
import { randomBytes, randomUUID } from 'node:crypto';
import type { DomainSpec } from '../../../agent/domains/hypervisor.js';
import { KilnError } from '../../../agent/errors.js';
import type { Test } from 'tap';

export function uniqueName(prefix = 'kiln-test'): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export function makeSpec(over: Partial<DomainSpec> & { dir?: string } = {}): DomainSpec {
  const dir = over.dir ?? '/var/lib/kiln/instances/x';
  const name = over.name ?? uniqueName();
  const { dir: _dir, ...rest } = over;
  return {
    name,
    uuid: randomUUID(),
    domainType: 'qemu',
    memoryBytes: 128 * 1024 * 1024,
    vcpus: 1,
    disk: { kind: 'file', path: `${dir}/disk.qcow2`, format: 'qcow2' },
    seed: { path: `${dir}/seed.iso` },
    consoleLogPath: `${dir}/console.log`,
    network: { kind: 'user', sshHostPort: 22222 },
    metadata: { instance: name, imageDigest: 'sha256:' + 'ab'.repeat(32), kilnVersion: '0.1.0-test' },
    ...rest,
  };
}

export type Asserts = Pick<Test, 'ok' | 'equal' | 'fail'>;

/** Awaits p, asserts it rejects with a KilnError of `code`, returns the error. */
export async function rejectsCode(t: Asserts, p: Promise<unknown>, code: string): Promise<KilnError> {
  try {
    await p;
  } catch (e) {
    t.ok(e instanceof KilnError, 'a KilnError');
    t.equal((e as KilnError).code, code, `fails with ${code}`);
    return e as KilnError;
  }
  t.fail(`expected ${code}, but it resolved`);
  throw new Error('unreachable');
}

/** Resolves with the first value pred accepts among those pushed through the returned sink. */
export function waitForEvent<E>(pred: (e: E) => boolean, timeoutMs: number): { sink: (e: E) => void; done: Promise<E> } {
  let resolve!: (e: E) => void;
  let reject!: (e: Error) => void;
  const done = new Promise<E>((res, rej) => { resolve = res; reject = rej; });
  const timer = setTimeout(() => reject(new Error(`no matching event within ${timeoutMs} ms`)), timeoutMs);
  return {
    sink: (e: E) => { if (pred(e)) { clearTimeout(timer); resolve(e); } },
    done,
  };
}
