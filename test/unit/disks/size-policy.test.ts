import t from 'tap';
import fc from 'fast-check';
import { KilnError } from '../../../agent/errors.js';
import { checkSizes, requiredDiskBytes, resolveDiskSize, roundUpToSector } from '../../../agent/disks/size-policy.js';

type TestLike = Pick<typeof t, 'ok' | 'equal' | 'match' | 'fail'>;
const GiB = 1024 ** 3;
const image = (virtualSize: number, minDisk = 0, minRam = 0) => ({ digest: 'sha256:' + 'a'.repeat(64), virtualSize, minDisk, minRam });

function refusal(t: TestLike, fn: () => unknown, code: string, required: number, requested: number, reason?: string) {
  try {
    fn();
    t.fail(`expected ${code}`);
  } catch (e) {
    t.ok(e instanceof KilnError, 'a KilnError');
    const k = e as KilnError;
    t.equal(k.code, code);
    t.equal(k.details.requiredBytes, required, 'details.requiredBytes');
    t.equal(k.details.requestedBytes, requested, 'details.requestedBytes');
    if (reason) t.equal(k.details.reason, reason);
    t.match(k.message, String(required), 'message names the required bytes');
    t.match(k.message, String(requested), 'message names the requested bytes');
  }
}



t.test('no size asked: the image size, raised to min_disk, whole sectors', async (t) => {
  t.equal(resolveDiskSize(image(2 * GiB)), 2 * GiB);
  t.equal(resolveDiskSize(image(2 * GiB, 10 * GiB)), 10 * GiB);
  t.equal(resolveDiskSize(image(1000)), 1024, 'rounded up to 512-byte sectors');
  t.equal(requiredDiskBytes(image(5, 7)), 7);
});

t.test('a size below the virtual size is refused with both numbers', async (t) => {
  refusal(t, () => resolveDiskSize(image(2 * GiB), GiB), 'KILN_DISK_TOO_SMALL', 2 * GiB, GiB, 'virtual size');
  refusal(t, () => checkSizes(image(2 * GiB), { diskBytes: 2 * GiB - 1 }), 'KILN_DISK_TOO_SMALL', 2 * GiB, 2 * GiB - 1, 'virtual size');
});

t.test('a size below min_disk is refused, naming min_disk', async (t) => {
  refusal(t, () => resolveDiskSize(image(GiB, 20 * GiB), 10 * GiB), 'KILN_DISK_TOO_SMALL', 20 * GiB, 10 * GiB, 'min_disk');
});

t.test('memory below min_ram is refused', async (t) => {
  refusal(t, () => checkSizes(image(GiB, 0, 512 * 1024 ** 2), { diskBytes: GiB, memoryBytes: 256 * 1024 ** 2 }), 'KILN_MEMORY_TOO_SMALL', 512 * 1024 ** 2, 256 * 1024 ** 2);
  t.doesNotThrow(() => checkSizes(image(GiB, 0, 512 * 1024 ** 2), { diskBytes: GiB, memoryBytes: 512 * 1024 ** 2 }));
  t.doesNotThrow(() => checkSizes(image(GiB, 0, 512 * 1024 ** 2), { diskBytes: GiB }), 'no memory asked: not checked here');
});

t.test('equal sizes pass; garbage is a bad request', async (t) => {
  t.equal(resolveDiskSize(image(GiB, GiB), GiB), GiB);
  t.throws(() => checkSizes(image(GiB), { diskBytes: -1 }), { code: 'KILN_BAD_REQUEST' });
  t.throws(() => checkSizes(image(GiB), { diskBytes: 1.5 }), { code: 'KILN_BAD_REQUEST' });
});

t.test('property: resolved sizes never shrink below the image and are whole sectors', async (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 2 ** 44 }), fc.integer({ min: 0, max: 2 ** 44 }), fc.option(fc.integer({ min: 1, max: 2 ** 45 }), { nil: undefined }),
      (virtualSize, minDisk, requested) => {
        const img = image(virtualSize, minDisk);
        const need = Math.max(virtualSize, minDisk);
        try {
          const size = resolveDiskSize(img, requested);
          return size >= need && size % 512 === 0 && (requested === undefined || size === roundUpToSector(requested)) && (requested === undefined || requested >= need);
        } catch (e) {
          return requested !== undefined && requested < need && (e as KilnError).code === 'KILN_DISK_TOO_SMALL' && (e as KilnError).details.requiredBytes === need;
        }
      },
    ),
  );
  t.pass('property held');
});
