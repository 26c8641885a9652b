// Owns: the in-process coordination of instance work: one operation per instance name at a time
// (FIFO), and a counting semaphore bounding disk-heavy steps (config diskConcurrency).
// Must not: do I/O. One kilnd owns a state dir (statedir.ts's flock), so in-process is enough.

/** One operation per instance name at a time: the image cache's keyed lock, keyed by name. */
export { KeyedLock as NameLock } from '../images/locks.js';

export class Semaphore {
  private active = 0;
  private readonly waiters: Array<() => void> = [];
  private peakSeen = 0;

  constructor(private readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`semaphore limit must be >= 1, got ${limit}`);
  }

  async with<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.waiters.push(r));
    else this.active++;
    this.peakSeen = Math.max(this.peakSeen, this.active);
    try {
      return await fn();
    } finally {
      const next = this.waiters.shift();
      // Hand the slot straight to the next waiter, so `active` never dips and lets a newcomer jump the queue.
      if (next) next();
      else this.active--;
    }
  }

  /** Highest number of holders seen at once (tests check the bound). */
  get peak(): number {
    return this.peakSeen;
  }
}
