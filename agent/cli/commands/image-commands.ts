// Owns: registering the image and cache commands (`kiln image fetch|ls|inspect|rm`, `kiln cache
// prune|verify`) as one entry of commands/index.ts. Must not: define commands itself.
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import * as imageFetch from './image-fetch.js';
import * as imageLs from './image-ls.js';
import * as imageInspect from './image-inspect.js';
import * as imageRm from './image-rm.js';
import * as cachePrune from './cache-prune.js';
import * as cacheVerify from './cache-verify.js';

export function register(program: Command, ctx: CliContext): void {
  for (const c of [imageFetch, imageLs, imageInspect, imageRm, cachePrune, cacheVerify]) c.register(program, ctx);
}
