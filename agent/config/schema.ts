// Owns: the one configuration schema of kilnd: every key's type, default, bounds and help text.
// Every key is settable from the config file (JSON, camelCase key), a flag (--kebab-case) and an
// environment variable (KILN_SNAKE_CASE). Must not: read files or the environment (load.ts does).

export type ConfigValueType = 'string' | 'int' | 'bool' | 'size' | 'duration' | 'enum' | 'list';

export interface ConfigKeySpec {
  readonly type: ConfigValueType;
  readonly default: string | number | boolean | readonly string[];
  readonly help: string;
  readonly values?: readonly string[];
  readonly min?: number;
  readonly max?: number;
}

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

export const CONFIG_SCHEMA = {
  stateDir: { type: 'string', default: '/var/lib/kiln', help: 'State directory: image cache, instances, tmp, lock file.' },
  socket: { type: 'string', default: '/run/kiln/kiln.sock', help: 'Path of the unix socket the API listens on.' },
  socketMode: { type: 'int', default: 0o660, min: 0, max: 0o777, help: 'Permission bits of the socket (octal in files as a string like "0660" or decimal).' },
  socketGroup: { type: 'string', default: '', help: 'Group that owns the socket (empty: the daemon\'s group). Members may call the API.' },
  libvirtUri: { type: 'string', default: 'qemu:///system', help: 'libvirt connection URI (test:///default for tests).' },
  logLevel: { type: 'enum', default: 'info', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], help: 'Log level of the JSON log on stdout.' },
  shutdownTimeout: { type: 'duration', default: 30_000, min: 0, help: 'How long kilnd waits for running requests on SIGTERM.' },

  requireChecksum: { type: 'bool', default: true, help: 'Refuse image fetches without --checksum.' },
  allowWeakChecksums: { type: 'bool', default: false, help: 'Allow md5 and sha1 checksums (sha256 is always computed too).' },
  fetchMaxBytes: { type: 'size', default: 64 * GiB, min: 1, help: 'Largest image download accepted; a longer body is cut off (KILN_TOO_LARGE).' },
  fetchStallTimeout: { type: 'duration', default: 30_000, min: 100, help: 'A download receiving no bytes for this long is aborted and retried.' },
  fetchConnectTimeout: { type: 'duration', default: 15_000, min: 100, help: 'TCP/TLS connect timeout for downloads.' },
  fetchRetries: { type: 'int', default: 5, min: 0, max: 100, help: 'Retries (with resume where possible) after a dropped or failed download.' },
  fetchRetryBackoff: { type: 'duration', default: 500, min: 0, help: 'First retry delay; doubles each retry up to 30 s.' },
  fetchMaxRedirects: { type: 'int', default: 5, min: 0, max: 20, help: 'Redirects followed per download.' },
  fetchCaBundle: { type: 'string', default: '', help: 'Extra PEM CA bundle trusted for HTTPS downloads (system CAs stay trusted).' },
  freeSpaceMargin: { type: 'size', default: 1 * GiB, min: 0, help: 'Free space kept in the state dir beyond a download\'s declared length.' },
  cacheMaxBytes: { type: 'size', default: 0, min: 0, help: 'Default cap for `kiln cache prune` (0: no size cap).' },

  allowedFormats: { type: 'list', default: ['raw', 'qcow2', 'vmdk', 'iso'], values: ['raw', 'qcow2', 'vmdk', 'iso', 'vhd', 'vhdx', 'vdi', 'luks'], help: 'Image formats accepted (qed is never accepted).' },
  maxVirtualSize: { type: 'size', default: 2 * 1024 * GiB, min: 1, help: 'Images with a larger virtual size are refused as unsafe.' },
  qemuImgAddressSpace: { type: 'size', default: 2 * GiB, min: 64 * MiB, help: 'RLIMIT_AS for qemu-img info/check (as Nova settled on).' },
  qemuImgCpuSeconds: { type: 'int', default: 30, min: 1, help: 'RLIMIT_CPU for qemu-img info/check.' },
  qemuImgTimeout: { type: 'duration', default: 60_000, min: 1000, help: 'Timeout of a qemu-img inspection call.' },
  convertTimeout: { type: 'duration', default: 3_600_000, min: 1000, help: 'Timeout of a qemu-img convert (flat disks, boot volumes).' },

  diskMode: { type: 'enum', default: 'overlay', values: ['overlay', 'flat'], help: 'Default root disk mode.' },
  flatFormat: { type: 'enum', default: 'qcow2', values: ['raw', 'qcow2'], help: 'Format of flat (full copy) disks.' },
  diskConcurrency: { type: 'int', default: 2, min: 1, max: 64, help: 'Disk-heavy operations (copies, converts) running at once.' },

  domainType: { type: 'enum', default: 'auto', values: ['auto', 'kvm', 'qemu'], help: 'libvirt domain type; auto uses kvm only where it truly works.' },
  defaultNetwork: { type: 'string', default: 'user', help: 'Network when a request names none: user, NAME (libvirt network) or bridge:BR.' },
  defaultMemory: { type: 'size', default: 1 * GiB, min: 16 * MiB, help: 'Guest memory when a request names none.' },
  defaultVcpus: { type: 'int', default: 1, min: 1, max: 256, help: 'Guest vCPUs when a request names none.' },
  shutdownGrace: { type: 'duration', default: 60_000, min: 0, help: 'Graceful guest shutdown time before destroy.' },
  readyTimeout: { type: 'duration', default: 300_000, min: 1000, help: 'How long --wait ssh waits for cloud-init to finish.' },
  sshPortBase: { type: 'int', default: 22200, min: 1024, max: 65000, help: 'First host port used for SSH forwards in user-mode networking.' },
  seedMaxFileBytes: { type: 'size', default: 16 * MiB, min: 1024, help: 'Largest single file accepted into a seed ISO.' },
  requestBodyMaxBytes: { type: 'size', default: 1 * MiB, min: 1024, help: 'Largest API request body.' },
} as const satisfies Record<string, ConfigKeySpec>;

export type ConfigKey = keyof typeof CONFIG_SCHEMA;

type ValueOf<S extends ConfigKeySpec> = S['type'] extends 'bool'
  ? boolean
  : S['type'] extends 'int' | 'size' | 'duration'
    ? number
    : S['type'] extends 'list'
      ? readonly string[]
      : string;

export type KilnConfig = { readonly [K in ConfigKey]: ValueOf<(typeof CONFIG_SCHEMA)[K]> };

export function flagName(key: string): string {
  return '--' + key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

export function envName(key: string): string {
  return 'KILN_' + key.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase();
}
