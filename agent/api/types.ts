// Owns: the types every API area shares: Route, RequestParts, Reply, Progress, AreaHandler.
// Must not: import areas or services.

export interface RequestParts {
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
}

export interface Route {
  method: 'GET' | 'POST' | 'DELETE' | 'PUT';
  pattern: string;
  /** true when the action can stream NDJSON progress (Accept: application/x-ndjson). */
  streams?: boolean;
  /** Parses the request into a typed action; throws KILN_BAD_REQUEST on anything malformed. */
  parse(parts: RequestParts): { kind: string };
}

export interface Reply {
  status: number;
  body: unknown;
  /** Plain text bodies (Prometheus) instead of JSON. */
  contentType?: string;
}

export type Progress = (event: { step: string; done?: number; total?: number; rate?: number; message?: string }) => void;

export type AreaHandler<A, S> = (action: A, services: S, progress: Progress) => Promise<Reply>;
