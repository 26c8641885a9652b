// Owns: the one size policy of root disks and boot volumes: how big a disk must be for an image
// (its virtual size and its min_disk), how big it is when nobody says, and the memory floor
// (min_ram). Every refusal carries the numbers (details.requiredBytes, details.requestedBytes).
// Must not: touch files, devices or qemu-img; callers measure, this module only decides.
import { KilnError } from '../errors.js';
import { formatSize } from '../config/units.js';
import type { ImageJson } from '../api/protocol.js';

/** qemu-img rounds image sizes up to whole sectors; kiln does it first so what it reports is what it made. */
export const SECTOR_BYTES = 512;

export type SizedImage = Pick<ImageJson, 'digest' | 'virtualSize' | 'minDisk' | 'minRam'>;

/** The smallest disk an image fits on: max(virtual size, min_disk). */
export function requiredDiskBytes(image: SizedImage): number {
  return Math.max(image.virtualSize, image.minDisk || 0);
}

export function roundUpToSector(bytes: number): number {
  return Math.ceil(bytes / SECTOR_BYTES) * SECTOR_BYTES;
}

/**
 * Refuses a disk smaller than the image needs or memory below min_ram.
 * KILN_DISK_TOO_SMALL / KILN_MEMORY_TOO_SMALL with details.requiredBytes and requestedBytes.
 */
export function checkSizes(image: SizedImage, o: { diskBytes: number; memoryBytes?: number }): void {
  const virtualSize = image.virtualSize;
  const minDisk = image.minDisk || 0;
  if (!Number.isSafeInteger(o.diskBytes) || o.diskBytes < 0) {
    throw new KilnError('KILN_BAD_REQUEST', `disk size must be a whole number of bytes, got ${String(o.diskBytes)}`, { requestedBytes: o.diskBytes });
  }
  if (o.diskBytes < virtualSize || o.diskBytes < minDisk) {
    // Name the binding constraint, so the operator knows which number to raise.
    const reason = minDisk > virtualSize ? 'min_disk' : 'virtual size';
    const requiredBytes = Math.max(virtualSize, minDisk);
    throw new KilnError(
      'KILN_DISK_TOO_SMALL',
      `disk of ${formatSize(o.diskBytes)} (${o.diskBytes} bytes) is smaller than the image's ${reason} of ${formatSize(requiredBytes)} (${requiredBytes} bytes); disks only grow, never shrink`,
      { requiredBytes, requestedBytes: o.diskBytes, virtualSize, minDisk, reason, image: image.digest },
    );
  }
  if (o.memoryBytes !== undefined) {
    const minRam = image.minRam || 0;
    if (!Number.isSafeInteger(o.memoryBytes) || o.memoryBytes < minRam) {
      throw new KilnError(
        'KILN_MEMORY_TOO_SMALL',
        `memory of ${formatSize(o.memoryBytes)} (${o.memoryBytes} bytes) is below the image's min_ram of ${formatSize(minRam)} (${minRam} bytes)`,
        { requiredBytes: minRam, requestedBytes: o.memoryBytes, image: image.digest },
      );
    }
  }
}

/**
 * The size of a file disk: the request rounded up to a whole sector, or, when nobody asked, the
 * image's own size raised to min_disk. Checked against the policy before it is returned.
 */
export function resolveDiskSize(image: SizedImage, requestedBytes?: number): number {
  if (requestedBytes === undefined) return roundUpToSector(requiredDiskBytes(image));
  checkSizes(image, { diskBytes: requestedBytes });
  return roundUpToSector(requestedBytes);
}
