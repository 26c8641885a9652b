// Owns: KilnError and the one registry of stable error codes (HTTP status, CLI exit code, meaning).
// Must not: know about HTTP servers, processes or libvirt. Boundaries (tools/, native/, api/)
// convert their own failures into these codes; nothing raw leaks past them.

export interface ErrorCodeSpec {
  /** HTTP status the API answers with. */
  readonly http: number;
  /** Exit status of the CLI. Unique per code so scripts can branch on it. */
  readonly exit: number;
  /** One line for the README's table and `kiln --help`. */
  readonly meaning: string;
}

export const ERROR_CODES = {
  KILN_INTERNAL: { http: 500, exit: 1, meaning: 'A bug in kiln: an unexpected failure. The log has the stack.' },
  KILN_BAD_REQUEST: { http: 400, exit: 2, meaning: 'The request or a command-line argument is malformed or out of range.' },
  KILN_NOT_FOUND: { http: 404, exit: 3, meaning: 'No image, instance, disk or route by that name.' },
  KILN_CONFLICT: { http: 409, exit: 4, meaning: 'The name exists with a different spec, or the reference is ambiguous.' },
  KILN_IN_USE: { http: 409, exit: 5, meaning: 'The image or device is in use (an instance disk backs onto it, or it is mounted).' },
  KILN_CHECKSUM_MISMATCH: { http: 422, exit: 6, meaning: 'The downloaded bytes do not match the checksum given; nothing was cached.' },
  KILN_CHECKSUM_ALGO: { http: 400, exit: 7, meaning: 'The checksum algorithm is unknown or refused (md5/sha1 need allowWeakChecksums).' },
  KILN_FETCH_FAILED: { http: 502, exit: 8, meaning: 'The image could not be downloaded (HTTP error, redirects, stall, size cap, length mismatch).' },
  KILN_IMAGE_UNSAFE: { http: 422, exit: 9, meaning: 'The image failed the safety inspection; details.reasons lists why.' },
  KILN_FORMAT_MISMATCH: { http: 422, exit: 10, meaning: 'The detected image format differs from the declared --disk-format.' },
  KILN_FORMAT_NOT_ALLOWED: { http: 422, exit: 11, meaning: 'The image format is recognised but not enabled in the configuration.' },
  KILN_DISK_TOO_SMALL: { http: 422, exit: 12, meaning: 'The disk or device is smaller than the image needs (virtual size or min_disk).' },
  KILN_MEMORY_TOO_SMALL: { http: 422, exit: 13, meaning: 'The memory asked for is below the image min_ram.' },
  KILN_NO_SPACE: { http: 507, exit: 14, meaning: 'Not enough free space in the state directory; nothing partial was kept.' },
  KILN_LIBVIRT: { http: 502, exit: 15, meaning: 'libvirt refused or failed; details carry libvirt code, domain and message.' },
  KILN_QEMU_IMG: { http: 500, exit: 16, meaning: 'qemu-img failed or answered something unexpected; details carry its stderr tail.' },
  KILN_TIMEOUT: { http: 504, exit: 17, meaning: 'An operation did not finish in time (tool, guest readiness, shutdown).' },
  KILN_TOOL_MISSING: { http: 500, exit: 18, meaning: 'A host program kiln needs is not installed (run scripts/setup).' },
  KILN_TOOL_FAILED: { http: 500, exit: 19, meaning: 'A host program exited non-zero; details carry its exit status and stderr tail.' },
  KILN_UNAVAILABLE: { http: 503, exit: 20, meaning: 'The daemon cannot be reached, or is shutting down.' },
  KILN_LOCKED: { http: 409, exit: 21, meaning: 'Another kilnd holds the state directory or serves the socket.' },
  KILN_CONFIG: { http: 500, exit: 22, meaning: 'The configuration (file, flags or KILN_* environment) is invalid.' },
  KILN_TOO_LARGE: { http: 413, exit: 23, meaning: 'A request body, file or download exceeds its configured cap.' },
  KILN_GUEST_FAILED: { http: 502, exit: 24, meaning: 'The guest failed to become ready: cloud-init reported an error, or SSH refused it (host key mismatch); details say which.' },
} as const satisfies Record<string, ErrorCodeSpec>;

export type KilnErrorCode = keyof typeof ERROR_CODES;

export type ErrorDetails = Record<string, unknown>;

export class KilnError extends Error {
  readonly code: KilnErrorCode;
  readonly details: ErrorDetails;

  constructor(code: KilnErrorCode, message: string, details: ErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KilnError';
    this.code = code;
    this.details = details;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }

  get exitCode(): number {
    return ERROR_CODES[this.code].exit;
  }

  toJSON(): { code: KilnErrorCode; message: string; details: ErrorDetails } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

export function isKilnError(value: unknown, code?: KilnErrorCode): value is KilnError {
  return value instanceof KilnError && (code === undefined || value.code === code);
}

export function isErrorCode(value: unknown): value is KilnErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, value);
}

/** Wraps anything thrown into a KilnError; a KilnError passes through untouched. */
export function toKilnError(value: unknown, fallback: KilnErrorCode = 'KILN_INTERNAL'): KilnError {
  if (value instanceof KilnError) return value;
  if (value instanceof Error) {
    const errno = (value as NodeJS.ErrnoException).code;
    if (errno === 'ENOSPC' || errno === 'EDQUOT') {
      return new KilnError('KILN_NO_SPACE', `no space left: ${value.message}`, { errno }, { cause: value });
    }
    return new KilnError(fallback, value.message, errno ? { errno } : {}, { cause: value });
  }
  return new KilnError(fallback, String(value));
}

/** Builds a KilnError from a wire body `{error:{code,message,details}}` (the CLI side of the API). */
export function fromWire(body: unknown): KilnError | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const error = (body as { error?: unknown }).error;
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, message, details } = error as { code?: unknown; message?: unknown; details?: unknown };
  if (!isErrorCode(code)) return undefined;
  return new KilnError(code, typeof message === 'string' ? message : code,
    typeof details === 'object' && details !== null ? (details as ErrorDetails) : {});
}
