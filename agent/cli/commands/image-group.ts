// Owns: the `kiln image` command group (created once, shared by the image-*.ts commands) and the
// human rendering of images. Must not: talk to the daemon.
import type { Command } from 'commander';
import { formatSize } from '../../config/units.js';
import type { ImageJson, InspectedImageJson } from '../../api/protocol.js';
import { keyValues, table } from '../output.js';

export function imageGroup(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === 'image') ??
    program
      .command('image')
      .description('fetch, list, inspect and remove cached images (fetch, ls, inspect, rm)')
      .addHelpText('after', '\nExamples:\n  kiln image fetch https://example.org/debian.qcow2 --checksum sha512:...\n  kiln image ls\n  kiln image inspect 3f2a\n  kiln image rm sha256:3f2a...')
  );
}

export function shortDigest(digest: string): string {
  return digest.replace(/^sha256:/, '').slice(0, 12);
}

export function renderImage(i: ImageJson | InspectedImageJson): string {
  return keyValues([
    ['digest', i.digest],
    ['format', i.format],
    ['virtual size', `${formatSize(i.virtualSize)} (${i.virtualSize} bytes)`],
    ['actual size', `${formatSize(i.actualSize)} (${i.actualSize} bytes)`],
    ['path', i.path],
    ['sources', i.sources.join(', ')],
    ['checksum', i.checksum],
    ['min disk', i.minDisk ? formatSize(i.minDisk) : '-'],
    ['min ram', i.minRam ? formatSize(i.minRam) : '-'],
    ['in use by', i.inUseBy.length ? i.inUseBy.join(', ') : '-'],
    ['fetched', i.fetchedAt],
    ['last used', i.lastUsedAt],
    ...verdictLines(i),
  ]);
}

function verdictLines(i: ImageJson | InspectedImageJson): Array<[string, unknown]> {
  if (!('safe' in i)) return [];
  return [
    ['backing chain', i.backingChain.length ? i.backingChain.join(' -> ') : '-'],
    ['safe', i.safe ? 'yes' : `NO: ${i.reasons.join('; ')}`],
  ];
}

export function renderImages(list: ImageJson[]): string {
  if (!list.length) return 'no cached images';
  return table(
    ['DIGEST', 'FORMAT', 'VIRTUAL', 'SIZE', 'LAST USED', 'IN USE BY', 'SOURCE'],
    list.map((i) => [shortDigest(i.digest), i.format, formatSize(i.virtualSize), formatSize(i.actualSize), (i.lastUsedAt ?? '').replace(/\.\d+Z$/, 'Z'), i.inUseBy.join(',') || '-', i.sources[0] ?? '-']),
  );
}
