// StandaloneDisks (the service behind POST /v1/disks) with fakes of the image cache and the
// disk maker, the API area's body parsing, and the CLI's request body.
import t from 'tap';
import { loadConfig } from '../../../agent/config/load.js';
import { KilnError } from '../../../agent/errors.js';
import { silentLogger } from '../../../agent/log.js';
import type { DiskJson, ImageJson } from '../../../agent/api/protocol.js';
import type { DiskRequest } from '../../../agent/disks/service.js';
import { StandaloneDisks, type ImageRefs } from '../../../agent/disks/standalone.js';
import { diskRoutes, handleDisks, parseDiskCreateBody } from '../../../agent/api/areas/disks.js';
import { matchRoute } from '../../../agent/api/routes.js';
import { buildDiskCreateBody } from '../../../agent/cli/commands/disk-create.js';

const DIGEST = 'sha256:' + 'c'.repeat(64);

/** fake-image-cache: references in a map, like ImageCache's refs/ folder. */
class FakeImages implements ImageRefs {
  refs = new Set<string>();
  image: ImageJson = { digest: DIGEST, format: 'qcow2', virtualSize: 1024, actualSize: 10, path: '/var/lib/kiln/images/sha256/c/disk', sources: [], minDisk: 0, minRam: 0, inUseBy: [] };
  async get(ref: string) {
    if (!DIGEST.replace('sha256:', '').startsWith(ref.replace('sha256:', ''))) throw new KilnError('KILN_NOT_FOUND', 'no image');
    return { ...this.image, inUseBy: [...this.refs] };
  }
  async list() {
    return [{ ...this.image, inUseBy: [...this.refs] }];
  }
  async acquire(_d: string, holder: string) {
    this.refs.add(holder);
    return this.get(DIGEST);
  }
  async release(_d: string, holder: string) {
    this.refs.delete(holder);
  }
}

class FakeDisks {
  requests: DiskRequest[] = [];
  fail?: KilnError;
  async create(req: DiskRequest): Promise<DiskJson> {
    this.requests.push(req);
    if (this.fail) throw this.fail;
    return req.mode === 'volume'
      ? { device: req.target, format: 'raw', virtualSize: 4096, mode: 'volume' }
      : { path: req.target, format: 'qcow2', virtualSize: req.sizeBytes ?? 1024, mode: req.mode };
  }
}

function make(diskMode = 'overlay') {
  const images = new FakeImages();
  const disks = new FakeDisks();
  const config = loadConfig({ flags: { diskMode } });
  return { images, disks, svc: new StandaloneDisks({ images, disks, config, log: silentLogger() }) };
}

t.test('overlay keeps its reference; flat and volume release it', async (t) => {
  const { images, disks, svc } = make();
  const o = await svc.create({ target: '/nonexistent-kiln/a.qcow2', image: 'cccc', sizeBytes: 2048 });
  t.equal(o.mode, 'overlay');
  t.equal(o.holder, 'disk:/nonexistent-kiln/a.qcow2');
  t.same([...images.refs], ['disk:/nonexistent-kiln/a.qcow2']);
  t.equal(disks.requests[0]!.image.digest, DIGEST, 'the disk is made from the acquired image');
  const f = await svc.create({ target: '/nonexistent-kiln/b.qcow2', image: DIGEST, mode: 'flat' });
  t.equal(f.holder, undefined);
  const v = await svc.create({ target: '/dev/loop7', image: DIGEST });
  t.equal(disks.requests[2]!.mode, 'volume', 'a /dev target is a boot volume');
  t.equal(v.device, '/dev/loop7');
  t.same([...images.refs], [], 'flat and volume hold nothing (and the fake overlay file never existed, so its reference was dropped as stale)');
});

t.test('a failed create releases the reference it took', async (t) => {
  const { images, disks, svc } = make();
  disks.fail = new KilnError('KILN_DISK_TOO_SMALL', 'small', { requiredBytes: 2, requestedBytes: 1 });
  await t.rejects(svc.create({ target: '/nonexistent-kiln/c.qcow2', image: DIGEST }), { code: 'KILN_DISK_TOO_SMALL' });
  t.same([...images.refs], []);
});

t.test('the configured mode is the default for files; stale references go', async (t) => {
  const { images, disks, svc } = make('flat');
  await svc.create({ target: '/nonexistent-kiln/d.qcow2', image: DIGEST });
  t.equal(disks.requests[0]!.mode, 'flat');
  images.refs.add('disk:/nonexistent-kiln/gone.qcow2');
  images.refs.add('web-1');
  t.same(await svc.dropStaleReferences(), ['disk:/nonexistent-kiln/gone.qcow2']);
  t.same([...images.refs], ['web-1'], 'instance references are never touched');
});

t.test('POST /v1/disks parses into a typed action and refuses the rest', async (t) => {
  const m = matchRoute(diskRoutes, 'POST', '/v1/disks');
  t.equal(m.route.streams, true, 'streams progress');
  t.same(m.route.parse({ params: {}, query: new URLSearchParams(), body: { target: '/srv/a.qcow2', image: 'sha256:abc', size: 4096, mode: 'flat' } }),
    { kind: 'disk.create', req: { target: '/srv/a.qcow2', image: 'sha256:abc', sizeBytes: 4096, mode: 'flat' } });
  t.throws(() => parseDiskCreateBody({ target: 'rel.qcow2', image: 'abc' }), { code: 'KILN_BAD_REQUEST' });
  t.throws(() => parseDiskCreateBody({ target: '/a', image: 'https://x/y.qcow2' }), { code: 'KILN_BAD_REQUEST' });
  t.throws(() => parseDiskCreateBody({ target: '/a', image: 'abc', mode: 'thin' }), { code: 'KILN_BAD_REQUEST' });
  t.throws(() => parseDiskCreateBody({ target: '/a', image: 'abc', size: '20G' }), { code: 'KILN_BAD_REQUEST' });
  t.throws(() => parseDiskCreateBody({ target: '/a', image: 'abc', bogus: 1 }), { code: 'KILN_BAD_REQUEST', message: /bogus/ });
  await t.rejects(handleDisks({ kind: 'disk.create', req: { target: '/a', image: 'abc' } }, {}, () => undefined), { code: 'KILN_UNAVAILABLE' });
  const { svc } = make();
  const reply = await handleDisks({ kind: 'disk.create', req: { target: '/nonexistent-kiln/e.qcow2', image: 'abc'.replace('abc', 'ccc') } }, { disks: svc }, () => undefined);
  t.equal(reply.status, 201);
});

t.test('the CLI resolves a relative PATH where the operator stands and parses sizes', async (t) => {
  t.same(buildDiskCreateBody('vm/disk.qcow2', { image: 'sha256:abc', size: '20G', mode: 'flat' }, '/home/op'),
    { target: '/home/op/vm/disk.qcow2', image: 'sha256:abc', size: 20 * 1024 ** 3, mode: 'flat' });
  t.same(buildDiskCreateBody('/dev/vg0/lv', { image: 'abc' }), { target: '/dev/vg0/lv', image: 'abc' });
  t.throws(() => buildDiskCreateBody('a', { image: 'abc', size: 'big' }), { code: 'KILN_BAD_REQUEST' });
});

t.test('two requests for one target: the second is refused and cannot drop the first one\'s reference', async (t) => {
  const { images, disks, svc } = make();
  let finish!: () => void;
  const gate = new Promise<void>((r) => (finish = r));
  const create = disks.create.bind(disks);
  disks.create = async (req) => {
    await gate;
    return create(req);
  };
  const first = svc.create({ target: '/nonexistent-kiln/same.qcow2', image: DIGEST });
  await new Promise((r) => setImmediate(r));
  await t.rejects(svc.create({ target: '/nonexistent-kiln/same.qcow2', image: DIGEST }), { code: 'KILN_CONFLICT' });
  t.same([...images.refs], ['disk:/nonexistent-kiln/same.qcow2'], 'the first request still holds the base');
  finish();
  t.equal((await first).holder, 'disk:/nonexistent-kiln/same.qcow2');
});
