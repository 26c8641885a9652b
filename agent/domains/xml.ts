// Owns: the pure translation of a DomainSpec into libvirt domain XML (q35, memory, vcpus, virtio
// root disk, read-only SATA seed cdrom, serial console logged to a file plus a pty, network,
// kiln's metadata element), and reading kiln's metadata element back.
// Must not: do I/O, choose policy (domain type, ports, paths come in the spec), or splice user
// input into markup: every value goes through the element builder below, which escapes it and
// refuses characters XML cannot carry.
import { KilnError } from '../errors.js';
import type { DomainSpec } from './hypervisor.js';

/** Namespace of kiln's metadata element inside <metadata>; listKiln() finds domains by it. */
export const KILN_METADATA_NS = 'https://kiln.dev/xmlns/domain/1.0';
export const KILN_METADATA_PREFIX = 'kiln';
const QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0';
/** Where the user-mode NIC sits on q35's root bus (a slot libvirt's own allocation leaves free). */
const USER_NET_PCI_ADDR = '0x10';

type Attrs = Record<string, string | number | undefined>;
interface XmlNode { name: string; attrs?: Attrs; children?: Array<XmlNode | string> }

const el = (name: string, attrs?: Attrs, ...children: Array<XmlNode | string | undefined | false>): XmlNode => ({
  name,
  ...(attrs ? { attrs } : {}),
  children: children.filter((c): c is XmlNode | string => c !== undefined && c !== false),
});

// XML 1.0 cannot carry most C0 controls, even escaped; refuse rather than emit broken XML.
const FORBIDDEN = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;

function escapeText(value: string): string {
  if (FORBIDDEN.test(value)) throw new KilnError('KILN_BAD_REQUEST', 'a domain XML value contains a control character', { value: JSON.stringify(value) });
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function escapeAttr(value: string): string {
  return escapeText(value).replace(/"/g, '&quot;').replace(/'/g, '&apos;').replace(/\t/g, '&#9;').replace(/\n/g, '&#10;').replace(/\r/g, '&#13;');
}

function serialize(node: XmlNode, depth = 0): string {
  const pad = '  '.repeat(depth);
  const attrs = Object.entries(node.attrs ?? {})
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${escapeAttr(String(v))}"`)
    .join('');
  const children = node.children ?? [];
  if (children.length === 0) return `${pad}<${node.name}${attrs}/>`;
  if (children.every((c) => typeof c === 'string')) return `${pad}<${node.name}${attrs}>${children.map((c) => escapeText(c as string)).join('')}</${node.name}>`;
  const inner = children.map((c) => (typeof c === 'string' ? pad + '  ' + escapeText(c) : serialize(c, depth + 1))).join('\n');
  return `${pad}<${node.name}${attrs}>\n${inner}\n${pad}</${node.name}>`;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// libvirt accepts more, but kiln names become file names and log fields: keep them plain.
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const NET_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

function bad(message: string, details: Record<string, unknown>): never {
  throw new KilnError('KILN_BAD_REQUEST', message, details);
}

function absolute(what: string, path: string): string {
  if (!path.startsWith('/') || path.includes('\0')) bad(`${what} must be an absolute path`, { [what]: path });
  return path;
}

/** Checks the spec; throws KILN_BAD_REQUEST naming the first bad field. */
export function validateSpec(spec: DomainSpec): void {
  if (!NAME_RE.test(spec.name)) bad('domain name must be 1-63 characters of letters, digits, ".", "_", "-"', { name: spec.name });
  if (!UUID_RE.test(spec.uuid)) bad('uuid must be in 8-4-4-4-12 hex form', { uuid: spec.uuid });
  if (spec.domainType !== 'kvm' && spec.domainType !== 'qemu') bad('domainType must be kvm or qemu', { domainType: spec.domainType });
  if (!Number.isSafeInteger(spec.memoryBytes) || spec.memoryBytes < 16 * 1024 * 1024) bad('memoryBytes must be an integer of at least 16 MiB', { memoryBytes: spec.memoryBytes });
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1 || spec.vcpus > 256) bad('vcpus must be 1-256', { vcpus: spec.vcpus });
  if (spec.disk.kind === 'file') {
    absolute('disk', spec.disk.path);
    if (spec.disk.format !== 'qcow2' && spec.disk.format !== 'raw') bad('disk format must be qcow2 or raw', { format: spec.disk.format });
  } else if (spec.disk.kind === 'block') {
    absolute('device', spec.disk.device);
  } else bad('disk kind must be file or block', { disk: spec.disk });
  if (spec.seed) absolute('seed', spec.seed.path);
  absolute('consoleLogPath', spec.consoleLogPath);
  const net = spec.network;
  if (net.kind === 'user') {
    if (net.sshHostPort !== undefined && (!Number.isInteger(net.sshHostPort) || net.sshHostPort < 1 || net.sshHostPort > 65535)) bad('sshHostPort must be 1-65535', { sshHostPort: net.sshHostPort });
  } else if (net.kind === 'network') {
    if (!NET_NAME_RE.test(net.name)) bad('network name is not a valid libvirt network name', { network: net.name });
  } else if (net.kind === 'bridge') {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$/.test(net.bridge)) bad('bridge name is not a valid interface name', { bridge: net.bridge });
  } else bad('network kind must be user, network or bridge', { network: net });
  for (const [k, v] of Object.entries(spec.metadata)) if (typeof v !== 'string') bad(`metadata.${k} must be a string`, { [k]: v });
}

function diskNode(spec: DomainSpec): XmlNode {
  const d = spec.disk;
  if (d.kind === 'file') {
    return el('disk', { type: 'file', device: 'disk' },
      el('driver', { name: 'qemu', type: d.format, discard: 'unmap' }),
      el('source', { file: d.path }),
      el('target', { dev: 'vda', bus: 'virtio' }));
  }
  // A whole block device: raw, no host page cache, native AIO (what boot volumes want).
  return el('disk', { type: 'block', device: 'disk' },
    el('driver', { name: 'qemu', type: 'raw', cache: 'none', io: 'native', discard: 'unmap' }),
    el('source', { dev: d.device }),
    el('target', { dev: 'vda', bus: 'virtio' }));
}

function interfaceNode(spec: DomainSpec): XmlNode | undefined {
  const n = spec.network;
  if (n.kind === 'network') return el('interface', { type: 'network' }, el('source', { network: n.name }), el('model', { type: 'virtio' }));
  if (n.kind === 'bridge') return el('interface', { type: 'bridge' }, el('source', { bridge: n.bridge }), el('model', { type: 'virtio' }));
  return undefined; // user-mode: qemu:commandline below (libvirt 9.0 has no hostfwd without passt)
}

function userNetCommandline(spec: DomainSpec): XmlNode | undefined {
  const n = spec.network;
  if (n.kind !== 'user') return undefined;
  const netdev = ['user', 'id=kilnnet0'];
  // Bound to loopback only: the guest's sshd is reachable from this host, not from the network.
  if (n.sshHostPort !== undefined) netdev.push(`hostfwd=tcp:127.0.0.1:${n.sshHostPort}-:22`);
  return el('qemu:commandline', undefined,
    el('qemu:arg', { value: '-netdev' }),
    el('qemu:arg', { value: netdev.join(',') }),
    el('qemu:arg', { value: '-device' }),
    el('qemu:arg', { value: `virtio-net-pci,netdev=kilnnet0,bus=pcie.0,addr=${USER_NET_PCI_ADDR}` }));
}

/** The libvirt domain XML for spec. Pure and deterministic (golden-file tested). */
export function domainXml(spec: DomainSpec): string {
  validateSpec(spec);
  const userNet = userNetCommandline(spec);
  const kib = Math.ceil(spec.memoryBytes / 1024);
  const root = el('domain', { type: spec.domainType, 'xmlns:qemu': userNet ? QEMU_NS : undefined },
    el('name', undefined, spec.name),
    el('uuid', undefined, spec.uuid.toLowerCase()),
    el('metadata', undefined,
      el(`${KILN_METADATA_PREFIX}:instance`, {
        [`xmlns:${KILN_METADATA_PREFIX}`]: KILN_METADATA_NS,
        name: spec.metadata.instance,
        imageDigest: spec.metadata.imageDigest,
        kilnVersion: spec.metadata.kilnVersion,
      })),
    el('memory', { unit: 'KiB' }, String(kib)),
    el('currentMemory', { unit: 'KiB' }, String(kib)),
    el('vcpu', { placement: 'static' }, String(spec.vcpus)),
    el('os', undefined,
      el('type', { arch: 'x86_64', machine: 'q35' }, 'hvm'),
      el('boot', { dev: 'hd' }),
      // SeaBIOS messages on the serial console: the console log shows boot trouble too.
      el('bios', { useserial: 'yes' })),
    el('features', undefined, el('acpi'), el('apic')),
    spec.domainType === 'kvm' ? el('cpu', { mode: 'host-passthrough', check: 'none', migratable: 'on' }) : undefined,
    el('clock', { offset: 'utc' }),
    el('on_poweroff', undefined, 'destroy'),
    el('on_reboot', undefined, 'restart'),
    el('on_crash', undefined, 'destroy'),
    el('devices', undefined,
      diskNode(spec),
      spec.seed && el('disk', { type: 'file', device: 'cdrom' },
        el('driver', { name: 'qemu', type: 'raw' }),
        el('source', { file: spec.seed.path }),
        el('target', { dev: 'sda', bus: 'sata' }),
        el('readonly')),
      interfaceNode(spec),
      // A pty for interactive `virsh console`, its output also logged (virtlogd) to the instance folder.
      el('serial', { type: 'pty' },
        el('log', { file: spec.consoleLogPath, append: 'off' }),
        el('target', { port: 0 })),
      el('console', { type: 'pty' }, el('target', { type: 'serial', port: 0 })),
      el('rng', { model: 'virtio' }, el('backend', { model: 'random' }, '/dev/urandom')),
      el('memballoon', { model: 'virtio' })),
    userNet);
  return serialize(root) + '\n';
}

function unescapeXml(value: string): string {
  return value.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);/g, (_, ent: string) => {
    switch (ent) {
      case 'amp': return '&';
      case 'lt': return '<';
      case 'gt': return '>';
      case 'quot': return '"';
      case 'apos': return "'";
      default: return String.fromCodePoint(ent[1] === 'x' ? parseInt(ent.slice(2), 16) : parseInt(ent.slice(1), 10));
    }
  });
}

/**
 * Reads kiln's metadata element, either from domain XML (prefixed, with its xmlns) or as
 * virDomainGetMetadata returns it for KILN_METADATA_NS: without prefix or namespace declaration,
 * the namespace being implied by the query (`fromQuery`). Returns undefined when it is not
 * kiln's element or lacks a field.
 */
export function parseKilnMetadata(xml: string, fromQuery = false): DomainSpec['metadata'] | undefined {
  const start = /^\s*<([A-Za-z_][\w.-]*:)?instance\b([^>]*)>/.exec(xml);
  if (!start) return undefined;
  const attrs = new Map<string, string>();
  for (const m of (start[2] ?? '').matchAll(/([A-Za-z_][\w.:-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
    attrs.set(m[1]!, unescapeXml(m[2] ?? m[3] ?? ''));
  }
  const prefix = start[1] ? start[1].slice(0, -1) : undefined;
  const ns = prefix ? attrs.get(`xmlns:${prefix}`) : attrs.get('xmlns');
  if (ns !== KILN_METADATA_NS && !(fromQuery && ns === undefined)) return undefined;
  const instance = attrs.get('name');
  const imageDigest = attrs.get('imageDigest');
  const kilnVersion = attrs.get('kilnVersion');
  if (instance === undefined || imageDigest === undefined || kilnVersion === undefined) return undefined;
  return { instance, imageDigest, kilnVersion };
}

/** The serial console's log file in domain XML (as libvirt returns it), or undefined. */
export function consoleLogPathOf(xml: string): string | undefined {
  const serial = /<serial\b[^>]*>([\s\S]*?)<\/serial>/.exec(xml)?.[1];
  const m = serial && /<log\b[^>]*\bfile\s*=\s*(?:"([^"]*)"|'([^']*)')/.exec(serial);
  return m ? unescapeXml(m[1] ?? m[2] ?? '') : undefined;
}
