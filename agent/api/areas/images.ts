// Owns: the images and cache area of the API: POST /v1/images (fetch; NDJSON progress with
// Accept: application/x-ndjson), GET /v1/images, GET|DELETE /v1/images/:digest,
// POST /v1/cache/prune and POST /v1/cache/verify; parsing each request into a typed action
// (unknown fields refused) and handing it to the image cache.
// Must not: see node:http or touch files; the cache is agent/images/.
import type { ImageJson, InspectedImageJson } from '../protocol.js';
import type { AreaHandler, Progress, Reply, Route } from '../types.js';
import { BodyReader } from '../actions.js';
import { KilnError } from '../../errors.js';

export interface FetchImageBody {
  url: string;
  checksum?: string;
  diskFormat?: string;
  minDisk?: number;
  minRam?: number;
}

export type ImageAction =
  | { kind: 'image.fetch'; req: FetchImageBody }
  | { kind: 'image.list' }
  | { kind: 'image.get'; ref: string }
  | { kind: 'image.remove'; ref: string }
  | { kind: 'cache.prune'; maxBytes?: number; olderThanMs?: number }
  | { kind: 'cache.verify' };

export interface PruneJson {
  removed: string[];
  freedBytes: number;
}

export interface VerifyJson {
  ok: string[];
  quarantined: Array<{ digest: string; reason: string }>;
  failedInUse?: Array<{ digest: string; reason: string; inUseBy: string[] }>;
}

/** What the area needs of agent/images ImageCache. */
export interface ImageApi {
  ensure(req: FetchImageBody, progress?: Progress): Promise<ImageJson>;
  list(): Promise<ImageJson[]>;
  get(ref: string): Promise<ImageJson>;
  inspect(ref: string): Promise<InspectedImageJson>;
  remove(ref: string): Promise<void>;
  prune(o: { maxBytes?: number; olderThanMs?: number }): Promise<PruneJson>;
  verify(progress?: Progress): Promise<VerifyJson>;
}

export interface ImageServices {
  images?: ImageApi;
}

const TiB = 1024 ** 4;
/** An image reference: sha256:HEX, or a hex prefix (validated again by the cache). */
const REF_PATTERN = /^(sha256:)?[0-9a-fA-F]{1,64}$/;

export function parseFetchBody(body: unknown): FetchImageBody {
  const b = new BodyReader(body, 'image fetch body');
  const url = b.string('url', { required: true, max: 8192 });
  const checksum = b.string('checksum', { max: 200 });
  const diskFormat = b.string('diskFormat', { max: 16, pattern: /^[a-z0-9]+$/ });
  const minDisk = b.number('minDisk', { min: 0, max: 64 * TiB });
  const minRam = b.number('minRam', { min: 0, max: 64 * TiB });
  b.done();
  return {
    url,
    ...(checksum !== undefined ? { checksum } : {}),
    ...(diskFormat !== undefined ? { diskFormat } : {}),
    ...(minDisk !== undefined ? { minDisk } : {}),
    ...(minRam !== undefined ? { minRam } : {}),
  };
}

function ref(params: Record<string, string>): string {
  const r = params.digest ?? '';
  if (!REF_PATTERN.test(r)) {
    throw new KilnError('KILN_BAD_REQUEST', `"${r.slice(0, 80)}" is not an image reference (sha256:HEX or a hex prefix)`, { field: 'digest' });
  }
  return r;
}

const noBody = (body: unknown) => new BodyReader(body).done();

export const imageRoutes: Route[] = [
  { method: 'POST', pattern: '/v1/images', streams: true, parse: (p) => ({ kind: 'image.fetch', req: parseFetchBody(p.body) }) },
  { method: 'GET', pattern: '/v1/images', parse: (p) => (noBody(p.body), { kind: 'image.list' }) },
  { method: 'GET', pattern: '/v1/images/:digest', parse: (p) => (noBody(p.body), { kind: 'image.get', ref: ref(p.params) }) },
  { method: 'DELETE', pattern: '/v1/images/:digest', parse: (p) => (noBody(p.body), { kind: 'image.remove', ref: ref(p.params) }) },
  {
    method: 'POST',
    pattern: '/v1/cache/prune',
    parse: (p) => {
      const b = new BodyReader(p.body, 'cache prune body');
      const maxBytes = b.number('maxBytes', { min: 0 });
      const olderThanMs = b.number('olderThanMs', { min: 0 });
      b.done();
      return { kind: 'cache.prune', ...(maxBytes !== undefined ? { maxBytes } : {}), ...(olderThanMs !== undefined ? { olderThanMs } : {}) };
    },
  },
  { method: 'POST', pattern: '/v1/cache/verify', streams: true, parse: (p) => (noBody(p.body), { kind: 'cache.verify' }) },
];

export function isImageAction(action: { kind: string }): action is ImageAction {
  return action.kind.startsWith('image.') || action.kind.startsWith('cache.');
}

export const handleImages: AreaHandler<ImageAction, ImageServices> = async (action, services, progress): Promise<Reply> => {
  const images = services.images;
  if (!images) throw new KilnError('KILN_UNAVAILABLE', 'the image cache is not available in this kilnd');
  switch (action.kind) {
    case 'image.fetch':
      return { status: 200, body: await images.ensure(action.req, progress) };
    case 'image.list':
      return { status: 200, body: await images.list() };
    case 'image.get':
      return { status: 200, body: await images.inspect(action.ref) };
    case 'image.remove':
      await images.remove(action.ref);
      return { status: 200, body: { removed: action.ref } };
    case 'cache.prune':
      return {
        status: 200,
        body: await images.prune({
          ...(action.maxBytes !== undefined ? { maxBytes: action.maxBytes } : {}),
          ...(action.olderThanMs !== undefined ? { olderThanMs: action.olderThanMs } : {}),
        }),
      };
    case 'cache.verify':
      return { status: 200, body: await images.verify(progress) };
  }
};
