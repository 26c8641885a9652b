// Owns: the `kiln instance` command group (created once, shared by the instance-*.ts commands)
// and the human rendering of instances. Must not: talk to the daemon.
import type { Command } from 'commander';
import { formatSize } from '../../config/units.js';
import type { InstanceJson } from '../../api/protocol.js';
import { keyValues, table } from '../output.js';

export function instanceGroup(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === 'instance') ??
    program
      .command('instance')
      .description('provision instances and manage their lifecycle (create, ls, show, start, stop, rm)')
      .addHelpText('after', '\nExamples:\n  kiln instance create web-1 --image https://example.org/debian.qcow2 --checksum sha256:... --ssh-key ~/.ssh/id_ed25519.pub\n  kiln instance ls\n  kiln instance rm web-1')
  );
}

type Shown = InstanceJson & { network?: string; uuid?: string; sshUser?: string | null; sshHostKey?: string | null };

export function renderInstance(i: Shown): string {
  const disk = i.disk.device ?? i.disk.path ?? '-';
  return keyValues([
    ['name', i.name],
    ['state', i.state],
    ['ready', i.ready ? 'yes' : 'no'],
    ['image', i.image.digest],
    ['disk', `${disk} (${i.disk.mode}, ${i.disk.format}, ${formatSize(i.disk.virtualSize)})`],
    ['seed', `${i.seed.path} (${i.seed.format})`],
    ['memory', formatSize(i.memory)],
    ['vcpus', i.vcpus],
    ['network', i.network],
    ['ssh', i.ssh ? `${i.ssh.host}:${i.ssh.port}` : '-'],
    ['ssh user', i.sshUser],
    ['ssh host key', i.sshHostKey],
    ['addresses', i.addresses.length ? i.addresses.join(', ') : '-'],
    ['console', i.console],
    ['created', i.createdAt],
  ]);
}

export function renderInstances(list: Shown[]): string {
  if (!list.length) return 'no instances';
  return table(
    ['NAME', 'STATE', 'READY', 'IMAGE', 'MEMORY', 'VCPUS', 'SSH'],
    list.map((i) => [
      i.name, i.state, i.ready ? 'yes' : 'no', i.image.digest.slice(0, 19), formatSize(i.memory), i.vcpus,
      i.ssh ? `${i.ssh.host}:${i.ssh.port}` : '-',
    ]),
  );
}
