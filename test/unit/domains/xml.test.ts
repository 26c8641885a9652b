// domainXml: golden files for each disk/network shape, schema validation with libvirt's own
// virt-xml-validate, escaping of every user-supplied value (property-based), spec validation.
import t from 'tap';
import fc from 'fast-check';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { consoleLogPathOf, domainXml, parseKilnMetadata, KILN_METADATA_NS } from '../../../agent/domains/xml.js';
import type { DomainSpec } from '../../../agent/domains/hypervisor.js';
import { KilnError } from '../../../agent/errors.js';
import { run } from '../../../agent/tools/run.js';

const GOLDEN = join(import.meta.dirname, '..', '..', 'fixtures', 'golden');
const dir = mkdtempSync(join(tmpdir(), 'kiln-xml-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const meta = { instance: 'web-1', imageDigest: 'sha256:' + '0f'.repeat(32), kilnVersion: '0.1.0' };
const inst = '/var/lib/kiln/instances/web-1';

const SPECS: Record<string, DomainSpec> = {
  'domain-user-qcow2-seed': {
    name: 'web-1', uuid: '0b6f3c1e-8f5a-4d2b-9c71-3e2a1d0f5b6c', domainType: 'qemu', memoryBytes: 1024 ** 3, vcpus: 2,
    disk: { kind: 'file', path: `${inst}/disk.qcow2`, format: 'qcow2' }, seed: { path: `${inst}/seed.iso` },
    consoleLogPath: `${inst}/console.log`, network: { kind: 'user', sshHostPort: 22200 }, metadata: meta,
  },
  'domain-kvm-network-block': {
    name: 'db-1', uuid: 'A1B2C3D4-E5F6-4711-8899-AABBCCDDEEFF', domainType: 'kvm', memoryBytes: 4 * 1024 ** 3, vcpus: 4,
    disk: { kind: 'block', device: '/dev/vg0/db-1' }, consoleLogPath: '/var/lib/kiln/instances/db-1/console.log',
    network: { kind: 'network', name: 'default' }, metadata: { ...meta, instance: 'db-1' },
  },
  'domain-bridge-raw': {
    name: 'edge-1', uuid: '6c0e2b7a-1d3f-4e5a-8b9c-0d1e2f3a4b5c', domainType: 'qemu', memoryBytes: 512 * 1024 ** 2 + 1, vcpus: 1,
    disk: { kind: 'file', path: '/var/lib/kiln/instances/edge-1/disk.raw', format: 'raw' }, seed: { path: '/var/lib/kiln/instances/edge-1/seed.iso' },
    consoleLogPath: '/var/lib/kiln/instances/edge-1/console.log', network: { kind: 'bridge', bridge: 'br0' }, metadata: { ...meta, instance: 'edge-1' },
  },
  'domain-user-no-forward': {
    name: 'batch-1', uuid: '9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b', domainType: 'qemu', memoryBytes: 256 * 1024 ** 2, vcpus: 1,
    disk: { kind: 'file', path: '/srv/kiln/instances/batch-1/disk.qcow2', format: 'qcow2' },
    consoleLogPath: '/srv/kiln/instances/batch-1/console.log', network: { kind: 'user' }, metadata: { ...meta, instance: 'batch-1' },
  },
};

async function validate(xml: string, name: string): Promise<{ ok: boolean; output: string }> {
  const file = join(dir, `${name}.xml`);
  writeFileSync(file, xml);
  const r = await run('virt-xml-validate', [file, 'domain'], { timeoutMs: 30_000, okExitCodes: [0, 1, 2, 3, 4, 5] });
  return { ok: r.exitCode === 0, output: (r.stdout + r.stderr).trim() };
}

t.test('virt-xml-validate is installed (libvirt-clients)', async (t) => {
  t.ok(existsSync('/usr/bin/virt-xml-validate'), 'the schema validator is there; scripts/setup installs libvirt-clients');
});

for (const [name, spec] of Object.entries(SPECS)) {
  t.test(`golden ${name}.xml`, async (t) => {
    const xml = domainXml(spec);
    const golden = join(GOLDEN, `${name}.xml`);
    if (process.env.KILN_UPDATE_GOLDEN === '1') writeFileSync(golden, xml);
    t.equal(xml, readFileSync(golden, 'utf8'), 'matches the golden file');
    t.equal(domainXml(spec), xml, 'deterministic');
    const v = await validate(xml, name);
    t.ok(v.ok, `valid against libvirt's domain schema: ${v.output}`);
  });
}

t.test('shape of the XML', async (t) => {
  const user = domainXml(SPECS['domain-user-qcow2-seed']!);
  t.match(user, /<type arch="x86_64" machine="q35">hvm<\/type>/, 'q35');
  t.match(user, /<domain type="qemu" xmlns:qemu=/, 'TCG domain, qemu namespace for user-mode networking');
  t.match(user, /<memory unit="KiB">1048576<\/memory>/);
  t.match(user, /<vcpu placement="static">2<\/vcpu>/);
  t.match(user, /<target dev="vda" bus="virtio"\/>/, 'virtio root disk');
  t.match(user, /<disk type="file" device="cdrom">[\s\S]*<target dev="sda" bus="sata"\/>\s*<readonly\/>/, 'seed is a read-only SATA cdrom');
  t.match(user, /<serial type="pty">\s*<log file="\/var\/lib\/kiln\/instances\/web-1\/console.log" append="off"\/>/, 'pty with a log file');
  t.match(user, /hostfwd=tcp:127\.0\.0\.1:22200-:22/, 'ssh forward bound to loopback');
  t.match(user, /bus=pcie\.0/, 'q35 needs the NIC on pcie.0');
  t.notMatch(user, /<interface/, 'no libvirt interface for user-mode');
  const kvm = domainXml(SPECS['domain-kvm-network-block']!);
  t.match(kvm, /<domain type="kvm">/);
  t.match(kvm, /<cpu mode="host-passthrough"/);
  t.match(kvm, /<uuid>a1b2c3d4-e5f6-4711-8899-aabbccddeeff<\/uuid>/, 'uuid lower-cased');
  t.match(kvm, /<disk type="block" device="disk">\s*<driver name="qemu" type="raw" cache="none" io="native"/);
  t.notMatch(kvm, /cdrom/, 'no seed, no cdrom');
  t.notMatch(kvm, /qemu:commandline/);
  t.match(domainXml(SPECS['domain-bridge-raw']!), /<memory unit="KiB">524289<\/memory>/, 'memory rounds up to whole KiB');
  t.notMatch(domainXml(SPECS['domain-user-no-forward']!), /hostfwd/, 'no forward without a port');
});

t.test('user values are escaped, never markup', async (t) => {
  const hostile = '"/><evil attr=\'1\'/><x a="&amp;';
  const spec: DomainSpec = {
    ...SPECS['domain-user-qcow2-seed']!,
    disk: { kind: 'file', path: "/srv/it's & <odd>/disk.qcow2", format: 'qcow2' },
    metadata: { instance: hostile, imageDigest: 'sha256:<x>', kilnVersion: 'tab\there\nnewline' },
  };
  const xml = domainXml(spec);
  t.notMatch(xml, /<evil/, 'no injected element');
  t.match(xml, /file="\/srv\/it&apos;s &amp; &lt;odd&gt;\/disk.qcow2"/);
  const v = await validate(xml, 'hostile');
  t.ok(v.ok, `still valid XML and schema: ${v.output}`);
  const element = /<kiln:instance [^>]*\/>/.exec(xml)![0];
  t.same(parseKilnMetadata(element), spec.metadata, 'metadata round-trips exactly');
});

t.test('metadata round-trips for any printable strings (property)', async (t) => {
  const str = fc.string({ unit: 'binary', maxLength: 40 }).filter((s) => !/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/.test(s) && !/[\uD800-\uDFFF]/.test(s));
  fc.assert(fc.property(str, str, str, (instance, imageDigest, kilnVersion) => {
    const xml = domainXml({ ...SPECS['domain-user-no-forward']!, metadata: { instance, imageDigest, kilnVersion } });
    const element = /<kiln:instance [^>]*\/>/.exec(xml)![0];
    const back = parseKilnMetadata(element);
    return back !== undefined && back.instance === instance && back.imageDigest === imageDigest && back.kilnVersion === kilnVersion;
  }), { numRuns: 300 });
  t.pass('300 random metadata triples round-tripped');
});

t.test('parseKilnMetadata: libvirt query form, foreign namespaces, missing fields', async (t) => {
  t.same(parseKilnMetadata(`<instance name="a&lt;b&gt;&quot;c'" imageDigest="x" kilnVersion="y"/>`, true), { instance: 'a<b>"c\'', imageDigest: 'x', kilnVersion: 'y' }, 'form virDomainGetMetadata returns');
  t.equal(parseKilnMetadata(`<instance name="a" imageDigest="x" kilnVersion="y"/>`), undefined, 'without namespace, only from a query');
  t.equal(parseKilnMetadata(`<o:instance xmlns:o="https://example.com/other" name="a" imageDigest="x" kilnVersion="y"/>`), undefined, 'foreign namespace');
  t.same(parseKilnMetadata(`<k:instance xmlns:k='${KILN_METADATA_NS}' name='a&#10;b' imageDigest='x' kilnVersion='y'/>`), { instance: 'a\nb', imageDigest: 'x', kilnVersion: 'y' }, 'any prefix, single quotes, char refs');
  t.equal(parseKilnMetadata(`<instance name="a" kilnVersion="y"/>`, true), undefined, 'missing field');
});

t.test('consoleLogPathOf reads the serial log back', async (t) => {
  t.equal(consoleLogPathOf(domainXml(SPECS['domain-user-qcow2-seed']!)), `${inst}/console.log`);
  t.equal(consoleLogPathOf(`<domain><devices><serial type='pty'><log file='/a&amp;b/c.log' append='off'/></serial></devices></domain>`), '/a&b/c.log');
  t.equal(consoleLogPathOf('<domain><devices><console type="pty"/></devices></domain>'), undefined);
});

t.test('invalid specs are KILN_BAD_REQUEST naming the field', async (t) => {
  const base = SPECS['domain-user-qcow2-seed']!;
  const cases: Array<[string, Partial<DomainSpec>, string]> = [
    ['name with slash', { name: 'a/b' }, 'name'],
    ['empty name', { name: '' }, 'name'],
    ['uuid', { uuid: 'not-a-uuid' }, 'uuid'],
    ['memory', { memoryBytes: 1024 }, 'memoryBytes'],
    ['vcpus', { vcpus: 0 }, 'vcpus'],
    ['relative disk', { disk: { kind: 'file', path: 'disk.qcow2', format: 'qcow2' } }, 'disk'],
    ['relative device', { disk: { kind: 'block', device: 'sdb' } }, 'device'],
    ['relative console', { consoleLogPath: 'console.log' }, 'consoleLogPath'],
    ['port', { network: { kind: 'user', sshHostPort: 70000 } }, 'sshHostPort'],
    ['network name', { network: { kind: 'network', name: 'bad name' } }, 'network'],
    ['bridge name', { network: { kind: 'bridge', bridge: 'br0"x' } }, 'bridge'],
    ['control char', { metadata: { ...meta, instance: 'a\u0001b' } }, 'value'],
  ];
  for (const [what, over, field] of cases) {
    try {
      domainXml({ ...base, ...over });
      t.fail(`${what}: accepted`);
    } catch (e) {
      t.ok(e instanceof KilnError && e.code === 'KILN_BAD_REQUEST', `${what}: KILN_BAD_REQUEST`);
      t.ok(field in (e as KilnError).details, `${what}: details name ${field}`);
    }
  }
});
