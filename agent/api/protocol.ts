// Owns: the JSON shapes exchanged over the socket API (DESIGN.md's contract) and its version.
// Shared by the daemon's api/ and the CLI. Must not: import services or node:http.

export const API_VERSION = 'v1';

export interface HealthJson {
  ok: true;
  version: string;
}

export interface StatusJson {
  version: string;
  pid: number;
  uptimeSeconds: number;
  stateDir: string;
  socket: string;
  libvirt: { uri: string; connected: boolean; domainType?: string; error?: string };
  cache: { count: number; bytes: number };
  instances: { count: number };
}

export interface ImageJson {
  digest: string;
  format: string;
  virtualSize: number;
  actualSize: number;
  path: string;
  sources: string[];
  minDisk: number;
  minRam: number;
  inUseBy: string[];
  checksum?: string;
  fetchedAt?: string;
  lastUsedAt?: string;
}

/** `kiln image inspect`: the image plus a verdict of the cached file made just now. */
export interface InspectedImageJson extends ImageJson {
  backingChain: string[];
  safe: boolean;
  reasons: string[];
}

export interface DiskJson {
  path?: string;
  device?: string;
  format: string;
  virtualSize: number;
  mode: 'overlay' | 'flat' | 'volume';
}

export interface InstanceJson {
  name: string;
  state: string;
  image: { digest: string };
  disk: DiskJson;
  seed: { path: string; format: 'nocloud' | 'configdrive' };
  memory: number;
  vcpus: number;
  console: string;
  addresses: string[];
  ssh: { host: string; port: number } | null;
  ready: boolean;
  createdAt?: string;
}

export interface DiskInspectJson {
  format: string;
  virtualSize: number;
  actualSize: number;
  backingChain: string[];
  safe: boolean;
  reasons: string[];
}

export interface ErrorJson {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

/** One line of an NDJSON progress stream; the last line is {type:'result'} or {type:'error'}. */
export type ProgressEvent =
  | { type: 'progress'; step: string; done?: number; total?: number; rate?: number; message?: string }
  | { type: 'result'; result: unknown }
  | ErrorJson & { type: 'error' };
