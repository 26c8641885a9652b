// Owns: `kiln instance create`: reading --user-data/--ssh-key/--network-config client-side,
// sending the provisioning request and showing its progress on a terminal.
// Must not: provision anything itself; kilnd does.
import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import type { InstanceJson } from '../../api/protocol.js';
import type { CreateInstanceBody } from '../../api/areas/instances.js';
import { parseSize } from '../../config/units.js';
import { KilnError } from '../../errors.js';
import type { CliContext } from '../context.js';
import { action } from '../run-action.js';
import { instanceGroup, renderInstance } from './instance-group.js';

interface CreateOptions {
  image: string;
  checksum?: string;
  diskFormat?: string;
  minDisk?: string;
  minRam?: string;
  diskSize?: string;
  diskMode?: 'overlay' | 'flat';
  bootVolume?: string;
  memory?: string;
  vcpus?: string;
  userData?: string;
  sshKey?: string[];
  networkConfig?: string;
  seed?: 'nocloud' | 'configdrive';
  network?: string;
  wait?: 'running' | 'ssh';
  sshUser?: string;
}

function readText(path: string, flag: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new KilnError('KILN_BAD_REQUEST', `cannot read ${flag} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { flag, path });
  }
}

export function buildCreateBody(name: string, o: CreateOptions): CreateInstanceBody {
  const body: CreateInstanceBody = { name, image: o.image };
  if (o.checksum) body.checksum = o.checksum;
  if (o.diskFormat) body.diskFormat = o.diskFormat;
  if (o.minDisk) body.minDisk = parseSize(o.minDisk, '--min-disk');
  if (o.minRam) body.minRam = parseSize(o.minRam, '--min-ram');
  if (o.diskSize) body.diskSize = parseSize(o.diskSize, '--disk-size');
  if (o.diskMode) body.diskMode = o.diskMode;
  if (o.bootVolume) body.bootVolume = o.bootVolume;
  if (o.memory) body.memory = parseSize(o.memory, '--memory');
  if (o.vcpus) {
    if (!/^\d+$/.test(o.vcpus)) throw new KilnError('KILN_BAD_REQUEST', `--vcpus "${o.vcpus}" is not a whole number`, { flag: '--vcpus' });
    body.vcpus = Number(o.vcpus);
  }
  if (o.userData) body.userData = readText(o.userData, '--user-data');
  if (o.sshKey?.length) body.sshKey = o.sshKey.map((f) => readText(f, '--ssh-key').trim()).join('\n') + '\n';
  if (o.networkConfig) body.networkConfig = readText(o.networkConfig, '--network-config');
  if (o.seed) body.seed = o.seed;
  if (o.network) body.network = o.network;
  if (o.wait) body.wait = o.wait;
  if (o.sshUser) body.sshUser = o.sshUser;
  return body;
}

export function register(program: Command, ctx: CliContext): void {
  instanceGroup(program)
    .command('create')
    .description('provision an instance: fetch the image, make the disk and seed, define, start, wait (idempotent per NAME)')
    .argument('<name>', 'instance name (1-63 lowercase letters, digits, inner hyphens)')
    .requiredOption('--image <url>', 'image URL (http/https), or a cached image sha256:HEX')
    .option('--checksum <algo:hex>', 'checksum of the image, e.g. sha256:9f86d0...')
    .option('--disk-format <fmt>', 'declared image format (qcow2, raw, vmdk, ...); refused if it disagrees')
    .option('--min-disk <size>', 'image minimum disk size (e.g. 10G)')
    .option('--min-ram <size>', 'image minimum memory (e.g. 512M)')
    .option('--disk-size <size>', 'root disk size (default: the image needs)')
    .addOption(new Option('--disk-mode <mode>', 'qcow2 overlay on the cached base, or a flat copy').choices(['overlay', 'flat']))
    .option('--boot-volume <dev>', 'write the image to this block device instead of a file disk')
    .option('--memory <size>', 'guest memory (default from kilnd config)')
    .option('--vcpus <n>', 'guest vCPUs')
    .option('--user-data <file>', 'cloud-init user-data file (read here, sent to kilnd)')
    .option('--ssh-key <file>', 'public key file for the guest (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--network-config <file>', 'cloud-init network-config file')
    .addOption(new Option('--seed <format>', 'seed format').choices(['nocloud', 'configdrive']))
    .option('--network <net>', 'user (SSH port forward), a libvirt network NAME, or bridge:BR')
    .addOption(new Option('--wait <what>', 'return when the domain runs, or when SSH + cloud-init are done').choices(['running', 'ssh']))
    .option('--ssh-user <user>', 'guest user kiln logs in as for --wait ssh (default root)')
    .addHelpText('after', `
Examples:
  kiln instance create web-1 --image https://images.example/debian-12.qcow2 \\
      --checksum sha256:5d41402abc4b2a76b9719d911017c592... --ssh-key ~/.ssh/id_ed25519.pub --wait ssh
  kiln instance create db-1 --image sha256:5d4140 --memory 4G --vcpus 2 --disk-size 40G --network default
  kiln --json instance create ci-7 --image https://... --checksum sha256:... --user-data ci.yaml

The same NAME with the same spec returns the existing instance; a different spec is KILN_CONFLICT.`)
    .action(action(ctx, async (out, name: string, o: CreateOptions) => {
      const body = buildCreateBody(name, o);
      const client = await ctx.client();
      const bar = out.progress();
      const instance = await client.request<InstanceJson>('POST', '/v1/instances', body, bar ?? (() => undefined));
      if (bar) process.stderr.write('\n');
      out.result(instance, renderInstance);
    }));
}
