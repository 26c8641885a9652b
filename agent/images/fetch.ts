// Owns: downloading one URL into one .part file with undici: hashing the same Buffer chunks it
// writes, resuming after a drop with Range + If-Range (strong ETag or Last-Modified), restarting
// cleanly when the server ignores ranges or the resource changed, retries with backoff, a stall
// timeout, a redirect limit, the size cap, and Content-Length / Content-Range consistency.
// Must not: decide where files live, verify checksums against the request, or touch the cache;
// ImageCache does that with what this returns.
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { Agent, request, type Dispatcher } from 'undici';
import type { KilnConfig } from '../config/schema.js';
import { KilnError, isKilnError } from '../errors.js';
import type { Logger } from '../log.js';
import { kilnVersion } from '../version.js';
import type { Hashers } from './checksum.js';
import { FileSink } from './sink.js';
import { reclaimChunks } from './reclaim.js';

/** What a download knows about the remote resource; persisted beside the .part so a restart can resume. */
export interface RemoteState {
  /** The URL asked for (before redirects). */
  url: string;
  /** Strong ETag or Last-Modified, used as If-Range; absent: the server cannot resume us. */
  validator?: string;
  /** Full length of the resource when the server declared it. */
  total?: number;
}

export interface DownloadOptions {
  url: string;
  partPath: string;
  hashers: Hashers;
  /** Bytes already in partPath and already fed to `hashers`, with what the server said then. */
  resume?: { bytes: number; state: RemoteState };
  maxBytes: number;
  /**
   * Called once the length is known, before any body byte is written (free-space check). It is
   * synchronous on purpose: awaiting here would let a dropped connection discard body bytes
   * already received.
   */
  beforeBody?: (o: { total?: number; offset: number }) => void;
  /** Called whenever the remote state changes, so it can be persisted (in the background) for resume after a crash. */
  onState?: (state: RemoteState) => void;
  onProgress?: (o: { done: number; total?: number; rate: number }) => void;
  /** How many leading bytes of the .part are known durable (see FileSink); 0 after a restart. */
  onDurable?: (bytes: number) => void;
  signal?: AbortSignal;
}

export interface DownloadResult {
  bytes: number;
  finalUrl: string;
  state: RemoteState;
  /** HTTP requests made (redirect hops included). */
  requests: number;
  /** Bytes received over the network in this call (re-sent bytes after a restart included). */
  received: number;
  restarts: number;
  resumes: number;
}

export interface DownloaderOptions {
  connectTimeoutMs: number;
  stallTimeoutMs: number;
  retries: number;
  retryBackoffMs: number;
  maxRedirects: number;
  /** Extra PEM CAs, trusted on top of the system's. */
  caPem?: string;
}

export function downloaderOptionsFromConfig(config: KilnConfig): DownloaderOptions {
  let caPem: string | undefined;
  if (config.fetchCaBundle) {
    try {
      caPem = readFileSync(config.fetchCaBundle, 'utf8');
    } catch (e) {
      throw new KilnError('KILN_CONFIG', `cannot read fetchCaBundle ${config.fetchCaBundle}: ${(e as Error).message}`, { path: config.fetchCaBundle });
    }
  }
  return {
    connectTimeoutMs: config.fetchConnectTimeout,
    stallTimeoutMs: config.fetchStallTimeout,
    retries: config.fetchRetries,
    retryBackoffMs: config.fetchRetryBackoff,
    maxRedirects: config.fetchMaxRedirects,
    ...(caPem ? { caPem } : {}),
  };
}

/** A failure worth another attempt (network trouble, 5xx, stall). */
class RetryableError extends Error {
  constructor(message: string, readonly details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The server's answer contradicts what we know (length, range): start again from byte zero. */
class RestartError extends Error {}

const BODY_HIGH_WATER_MARK = 1024 * 1024;
/** Young garbage (consumed socket buffers) is collected every this many bytes (see reclaim.ts). */
const RECLAIM_EVERY_BYTES = 8 * 1024 * 1024;
const RETRYABLE_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);
const MAX_BACKOFF_MS = 30_000;

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Strong ETags only: a weak one promises equivalence, not the same bytes (RFC 9110 13.1.5). */
function validatorOf(headers: Record<string, string | string[] | undefined>): string | undefined {
  const etag = header(headers, 'etag');
  if (etag && !etag.startsWith('W/')) return etag;
  return header(headers, 'last-modified');
}

function declaredLength(headers: Record<string, string | string[] | undefined>): number | undefined {
  const v = header(headers, 'content-length');
  if (v === undefined || !/^\d+$/.test(v.trim())) return undefined;
  return Number(v);
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) {
      u.username = '***';
      u.password = '';
    }
    return u.toString();
  } catch {
    return url.slice(0, 200);
  }
}

export function checkFetchUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new KilnError('KILN_BAD_REQUEST', `"${url.slice(0, 200)}" is not a URL`, { field: 'url' });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new KilnError('KILN_BAD_REQUEST', `only http and https URLs can be fetched, not ${u.protocol}`, { field: 'url' });
  }
  return u;
}

export class Downloader {
  private readonly agent: Agent;
  private readonly log: Logger;

  constructor(private readonly o: DownloaderOptions, log: Logger) {
    this.log = log.child({ component: 'images.fetch' });
    this.agent = new Agent({
      connect: {
        timeout: o.connectTimeoutMs,
        // An extra bundle adds to the system's CAs; verification itself is never switched off.
        ...(o.caPem ? { ca: [...rootCertificates, o.caPem] } : {}),
        rejectUnauthorized: true,
      },
      headersTimeout: o.stallTimeoutMs,
      bodyTimeout: o.stallTimeoutMs,
      keepAliveTimeout: 10_000,
    });
  }

  async close(): Promise<void> {
    await this.agent.destroy().catch(() => undefined);
  }

  async download(d: DownloadOptions): Promise<DownloadResult> {
    checkFetchUrl(d.url);
    let offset = d.resume?.bytes ?? 0;
    let state: RemoteState = d.resume ? { ...d.resume.state, url: d.url } : { url: d.url };
    if (offset > 0 && !state.validator) {
      // Without a validator we cannot prove the bytes on disk belong to what the server has now.
      offset = 0;
      d.hashers.reset();
    }
    const sink = await FileSink.open(d.partPath, offset, d.onDurable ? { onDurable: d.onDurable } : {});
    const stats = { requests: 0, received: 0, restarts: 0, resumes: 0 };
    let finalUrl = d.url;
    let failures = 0;
    let highWater = offset;
    let lastError: unknown;
    const restart = async () => {
      await sink.truncate(0);
      d.hashers.reset();
      d.onDurable?.(0);
      offset = 0;
      stats.restarts++;
    };
    try {
      for (;;) {
        if (d.signal?.aborted) throw d.signal.reason;
        try {
          const r = await this.attempt(d, sink, offset, state, stats);
          finalUrl = r.finalUrl;
          state = r.state;
          offset = r.offset;
          break;
        } catch (e) {
          if (e instanceof AttemptFailure) {
            offset = e.offset;
            state = e.state;
            e = e.cause;
          }
          if (e instanceof RestartError) {
            this.log.warn({ url: redact(d.url), reason: e.message }, 'server answer disagrees with the partial download; restarting from zero');
            if (stats.restarts > this.o.retries) throw new KilnError('KILN_FETCH_FAILED', `download of ${redact(d.url)} keeps restarting: ${e.message}`, { url: redact(d.url), reason: 'restart-loop' });
            await restart();
            continue;
          }
          if (!(e instanceof RetryableError)) throw e;
          lastError = e;
          if (offset > highWater) {
            highWater = offset;
            failures = 0;
          }
          failures++;
          if (failures > this.o.retries) {
            throw new KilnError('KILN_FETCH_FAILED', `download of ${redact(d.url)} failed after ${failures} attempt(s): ${e.message}`, {
              url: redact(d.url), attempts: failures, bytes: offset, ...e.details,
            }, { cause: e });
          }
          if (offset > 0 && !state.validator) {
            this.log.warn({ url: redact(d.url), bytes: offset }, 'server gave no ETag/Last-Modified: the download restarts from zero');
            await restart();
          } else if (offset > 0) stats.resumes++;
          const delay = Math.min(MAX_BACKOFF_MS, this.o.retryBackoffMs * 2 ** (failures - 1));
          this.log.warn({ url: redact(d.url), attempt: failures, bytes: offset, delayMs: delay, err: e.message }, 'download interrupted; retrying');
          await sleep(delay, d.signal);
        }
      }
      await sink.sync();
    } catch (e) {
      await sink.close().catch(() => undefined);
      if (isKilnError(e)) throw e;
      const errno = (e as NodeJS.ErrnoException).code;
      if (errno === 'ENOSPC' || errno === 'EDQUOT') {
        throw new KilnError('KILN_NO_SPACE', `no space left while writing ${d.partPath}`, { path: d.partPath, errno }, { cause: e });
      }
      if (d.signal?.aborted) throw new KilnError('KILN_UNAVAILABLE', 'download cancelled', { url: redact(d.url) }, { cause: e });
      throw new KilnError('KILN_FETCH_FAILED', `download of ${redact(d.url)} failed: ${(e as Error).message}`, { url: redact(d.url), lastError: String(lastError ?? '') }, { cause: e });
    }
    await sink.close();
    return { bytes: offset, finalUrl, state, ...stats };
  }

  /** Sends GET, following redirects up to the limit; returns the final response (status not judged). */
  private async get(url: string, headers: Record<string, string>, stats: { requests: number }, signal?: AbortSignal): Promise<{ res: Dispatcher.ResponseData; url: string }> {
    let current = url;
    for (let hop = 0; ; hop++) {
      let res: Dispatcher.ResponseData;
      stats.requests++;
      try {
        res = await request(current, {
          dispatcher: this.agent,
          method: 'GET',
          headers: { 'user-agent': `kiln/${kilnVersion()}`, 'accept-encoding': 'identity', ...headers },
          highWaterMark: BODY_HIGH_WATER_MARK,
          ...(signal ? { signal } : {}),
        });
      } catch (e) {
        throw this.classify(e);
      }
      if (res.statusCode >= 300 && res.statusCode < 400 && res.statusCode !== 304) {
        await res.body.dump().catch(() => undefined);
        const location = header(res.headers, 'location');
        if (!location) throw new KilnError('KILN_FETCH_FAILED', `${redact(current)} answered ${res.statusCode} without a Location`, { url: redact(current), status: res.statusCode });
        if (hop + 1 > this.o.maxRedirects) {
          throw new KilnError('KILN_FETCH_FAILED', `too many redirects (more than ${this.o.maxRedirects}) fetching ${redact(url)}`, { url: redact(url), reason: 'redirects', limit: this.o.maxRedirects });
        }
        const next = new URL(location, current);
        if (next.protocol !== 'http:' && next.protocol !== 'https:') {
          throw new KilnError('KILN_FETCH_FAILED', `redirect to a ${next.protocol} URL refused`, { url: redact(current), reason: 'redirect-scheme' });
        }
        if (new URL(current).protocol === 'https:' && next.protocol === 'http:') {
          throw new KilnError('KILN_FETCH_FAILED', `redirect from https to plain http refused`, { url: redact(current), reason: 'redirect-downgrade' });
        }
        current = next.toString();
        continue;
      }
      return { res, url: current };
    }
  }

  private classify(e: unknown): Error {
    if (isKilnError(e)) return e;
    const err = e as { code?: string; message?: string; name?: string };
    const code = err.code ?? err.name;
    // Certificate failures are not retried: they will not fix themselves.
    if (typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) {
      return new KilnError('KILN_FETCH_FAILED', `TLS verification failed: ${err.message}`, { reason: 'tls', errno: code });
    }
    if (code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT') {
      return new RetryableError(`no data for ${this.o.stallTimeoutMs} ms (stalled)`, { reason: 'stall' }, { cause: e });
    }
    return new RetryableError(err.message ?? String(e), { reason: 'network', errno: code }, { cause: e });
  }

  private async attempt(d: DownloadOptions, sink: FileSink, startOffset: number, startState: RemoteState, stats: AttemptStats): Promise<{ offset: number; state: RemoteState; finalUrl: string }> {
    let offset = startOffset;
    let state = startState;
    const headers: Record<string, string> = {};
    if (offset > 0 && state.validator) {
      headers.range = `bytes=${offset}-`;
      headers['if-range'] = state.validator;
    }
    const { res, url } = await this.get(d.url, headers, stats, d.signal);
    const status = res.statusCode;
    const h = res.headers;
    try {
      if (status === 416 && offset > 0) {
        const m = /^bytes \*\/(\d+)$/.exec(header(h, 'content-range') ?? '');
        await res.body.dump().catch(() => undefined);
        if (m && Number(m[1]) === offset && (state.total === undefined || state.total === offset)) {
          return { offset, state, finalUrl: url }; // the partial file was already complete
        }
        if (m && state.total !== undefined && Number(m[1]) !== state.total) throw this.lengthMismatch(d.url, state.total, Number(m[1]));
        throw new RestartError(`range ${offset}- not satisfiable`);
      }
      if (RETRYABLE_STATUS.has(status)) {
        await res.body.dump().catch(() => undefined);
        throw new RetryableError(`server answered HTTP ${status}`, { reason: 'http', status });
      }
      if (status !== 200 && status !== 206) {
        await res.body.dump().catch(() => undefined);
        throw new KilnError('KILN_FETCH_FAILED', `${redact(url)} answered HTTP ${status}`, { url: redact(url), status, reason: 'http' });
      }
      const length = declaredLength(h);
      let total: number | undefined;
      if (status === 206) {
        const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header(h, 'content-range') ?? '');
        if (!m || Number(m[1]) !== offset || offset === 0) {
          await res.body.dump().catch(() => undefined);
          throw new RestartError(`unexpected Content-Range "${header(h, 'content-range') ?? ''}" for offset ${offset}`);
        }
        total = m[3] === '*' ? undefined : Number(m[3]);
        if (total !== undefined && Number(m[2]) !== total - 1) {
          await res.body.dump().catch(() => undefined);
          throw new RestartError(`partial range ${m[1]}-${m[2]} of ${total}`);
        }
        if (length !== undefined && total !== undefined && length !== total - offset) {
          await res.body.dump().catch(() => undefined);
          throw this.lengthMismatch(url, total - offset, length);
        }
        // If-Range matched, so the validator still holds; a changed one means the range is not ours.
        const v = validatorOf(h);
        if (v !== undefined && v !== state.validator) {
          await res.body.dump().catch(() => undefined);
          throw new RestartError(`validator changed from ${state.validator} to ${v}`);
        }
      } else {
        total = length;
        if (offset > 0) {
          // Server ignored Range, or If-Range failed because the resource changed: start over.
          this.log.info({ url: redact(url), had: offset }, 'server sent the whole body; restarting from zero');
          await sink.truncate(0);
          d.hashers.reset();
          d.onDurable?.(0);
          offset = 0;
          stats.restarts++;
        }
      }
      if (state.total !== undefined && total !== undefined && state.total !== total && status === 206) {
        await res.body.dump().catch(() => undefined);
        throw this.lengthMismatch(url, state.total, total);
      }
      if (total !== undefined && total > d.maxBytes) {
        await res.body.dump().catch(() => undefined);
        throw new KilnError('KILN_TOO_LARGE', `${redact(url)} is ${total} bytes, over the ${d.maxBytes}-byte cap (fetchMaxBytes)`, { url: redact(url), bytes: total, limit: d.maxBytes });
      }
      const validator = validatorOf(h);
      state = { url: d.url, ...(validator ? { validator } : {}), ...(total !== undefined ? { total } : {}) };
      if (status === 206) state = { ...state, validator: startState.validator! };
      d.onState?.(state);
      d.beforeBody?.({ ...(total !== undefined ? { total } : {}), offset });
      const cursor = { offset };
      try {
        await this.consume(d, res, sink, cursor, url, stats);
      } finally {
        // On a drop, the bytes that did arrive are hashed and queued: the retry starts after them.
        offset = cursor.offset;
      }
      const expectedEnd = total ?? (length !== undefined ? offset : undefined);
      if (expectedEnd !== undefined && offset !== expectedEnd) throw this.lengthMismatch(url, expectedEnd, offset);
      if (state.total === undefined && total === undefined) state = { ...state, total: offset };
      return { offset, state, finalUrl: url };
    } catch (e) {
      res.body.destroy();
      throw new AttemptFailure(offset, state, e);
    }
  }

  private lengthMismatch(url: string, expected: number, got: number): KilnError {
    return new KilnError('KILN_FETCH_FAILED', `length mismatch from ${redact(url)}: expected ${expected} bytes, got ${got}`, { url: redact(url), reason: 'length-mismatch', expected, got });
  }

  private async consume(d: DownloadOptions, res: Dispatcher.ResponseData, sink: FileSink, cursor: { offset: number }, url: string, stats: { received: number }): Promise<void> {
    const startOffset = cursor.offset;
    let offset = startOffset;
    const length = declaredLength(res.headers);
    const end = length !== undefined ? startOffset + length : undefined;
    let lastAt = performance.now();
    let lastBytes = offset;
    let rate = 0;
    let sinceReclaim = 0;
    d.onProgress?.({ done: offset, ...(end !== undefined ? { total: end } : {}), rate: 0 });
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        stats.received += chunk.length;
        if (offset + chunk.length > d.maxBytes) {
          throw new KilnError('KILN_TOO_LARGE', `${redact(url)} sent more than the ${d.maxBytes}-byte cap (fetchMaxBytes)`, { url: redact(url), limit: d.maxBytes });
        }
        d.hashers.update(chunk);
        const wait = sink.write(chunk);
        offset += chunk.length;
        cursor.offset = offset;
        sinceReclaim += chunk.length;
        if (sinceReclaim >= RECLAIM_EVERY_BYTES) {
          sinceReclaim = 0;
          reclaimChunks();
        }
        if (wait) await wait;
        if (d.onProgress) {
          const now = performance.now();
          if (now - lastAt >= 250) {
            rate = ((offset - lastBytes) * 1000) / (now - lastAt);
            lastAt = now;
            lastBytes = offset;
            d.onProgress({ done: offset, ...(end !== undefined ? { total: end } : {}), rate });
          }
        }
      }
    } catch (e) {
      if (isKilnError(e)) throw e;
      if ((e as NodeJS.ErrnoException).code === 'ENOSPC' || (e as NodeJS.ErrnoException).code === 'EDQUOT') throw e;
      const c = this.classify(e);
      if (c instanceof RetryableError && end !== undefined) {
        c.details.got = offset - startOffset;
        c.details.expected = length;
      }
      throw c;
    }
    d.onProgress?.({ done: offset, ...(end !== undefined ? { total: end } : {}), rate });
  }
}

interface AttemptStats {
  requests: number;
  received: number;
  restarts: number;
  resumes: number;
}

/** Carries how far an attempt got, so the retry resumes from there. */
class AttemptFailure extends Error {
  constructor(readonly offset: number, readonly state: RemoteState, override readonly cause: unknown) {
    super('attempt failed');
  }
}
