// Owns: wrapping a command's body so every failure prints in the chosen style and sets the
// registry's exit code. Must not: print results itself.
import type { CliContext } from './context.js';
import type { Output } from './output.js';

export function action<A extends unknown[]>(ctx: CliContext, body: (out: Output, ...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const out = ctx.output();
    try {
      await body(out, ...args);
    } catch (e) {
      process.exitCode = out.error(e);
    }
  };
}
