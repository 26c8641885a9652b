// Owns: in-process coordination of image work: a keyed async mutex (one holder per key, FIFO)
// and single flight (concurrent callers for one key share one promise). One kilnd owns a state
// dir (statedir.ts's flock), so in-process locks are enough.
// Must not: do I/O.

export class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs fn while holding `key`; waits for earlier holders first. Not re-entrant. */
  async with<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = previous.then(() => mine);
    this.tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  /** Whether `key` is held or waited for. */
  held(key: string): boolean {
    return this.tails.has(key);
  }

  /** Keys currently held or waited for (for tests and diagnostics). */
  busy(): string[] {
    return [...this.tails.keys()];
  }
}

export class SingleFlight<T, E> {
  private readonly flights = new Map<string, { promise: Promise<T>; listeners: Set<(e: E) => void> }>();

  /**
   * Joins the flight for `key` or starts one with `start(emit)`. Every joiner's listener receives
   * the events emitted from then on; the flight ends for everyone with the same result.
   */
  run(key: string, listener: ((e: E) => void) | undefined, start: (emit: (e: E) => void) => Promise<T>): Promise<T> {
    let flight = this.flights.get(key);
    if (!flight) {
      const listeners = new Set<(e: E) => void>();
      const emit = (e: E) => {
        for (const l of listeners) {
          try {
            l(e);
          } catch {
            /* a listener (a client that went away) must not break the fetch */
          }
        }
      };
      const created: { promise: Promise<T>; listeners: Set<(e: E) => void> } = { promise: undefined as unknown as Promise<T>, listeners };
      created.promise = Promise.resolve().then(() => start(emit)).finally(() => {
        if (this.flights.get(key) === created) this.flights.delete(key);
      });
      this.flights.set(key, created);
      flight = created;
    }
    if (listener) {
      const f = flight;
      f.listeners.add(listener);
      void f.promise.catch(() => undefined).finally(() => f.listeners.delete(listener));
    }
    return flight.promise;
  }

  size(): number {
    return this.flights.size;
  }
}
