// Test helper for seed tests: asserts that a call fails with KILN_BAD_REQUEST and a reason.
import { isKilnError } from '../../../agent/errors.js';

import type { Test } from 'tap';

export type Asserts = Pick<Test, 'ok' | 'match' | 'fail'>;

export function expectBad(t: Asserts, fn: () => unknown, reason: RegExp, label: string): void {
  try {
    fn();
    t.fail(`${label}: no error`);
  } catch (e) {
    t.ok(isKilnError(e, 'KILN_BAD_REQUEST'), `${label}: KILN_BAD_REQUEST (${String(e)})`);
    t.match(String((e as { details?: { reason?: unknown } }).details?.reason), reason, `${label}: reason`);
  }
}

export async function expectBadAsync(t: Asserts, fn: () => Promise<unknown>, reason: RegExp, label: string): Promise<void> {
  try {
    await fn();
    t.fail(`${label}: no error`);
  } catch (e) {
    t.ok(isKilnError(e, 'KILN_BAD_REQUEST'), `${label}: KILN_BAD_REQUEST (${String(e)})`);
    t.match(String((e as { details?: { reason?: unknown } }).details?.reason), reason, `${label}: reason`);
  }
}
