// hostDomainType: kvm only with vmx/svm AND a usable /dev/kvm; cross-checked on this host
// against scripts/host/domain-type (the shell twin scripts/setup prints).
import t from 'tap';
import { join } from 'node:path';
import { hasHardwareVirt, hostDomainType, readHostFacts, resolveDomainType } from '../../../agent/domains/host.js';
import { run } from '../../../agent/tools/run.js';

const intel = 'processor\t: 0\nflags\t\t: fpu vme de pse tsc msr pae mce cx8 apic vmx ept\nbogomips\t: 1\n';
const amd = 'processor\t: 0\nflags\t\t: fpu svm npt\n';
const pvm = 'processor\t: 0\nflags\t\t: fpu vme hypervisor kvm_pvm svmx\nbugs\t\t: vmx_fake\n';

t.test('flags parsing', async (t) => {
  t.equal(hasHardwareVirt(intel), true, 'vmx');
  t.equal(hasHardwareVirt(amd), true, 'svm');
  t.equal(hasHardwareVirt(pvm), false, 'neither a longer word nor another line counts');
  t.equal(hasHardwareVirt(''), false);
});

t.test('decision table', async (t) => {
  t.equal(hostDomainType({ cpuinfo: intel, kvmDevice: true }), 'kvm');
  t.equal(hostDomainType({ cpuinfo: intel, kvmDevice: false }), 'qemu', 'no usable /dev/kvm');
  t.equal(hostDomainType({ cpuinfo: pvm, kvmDevice: true }), 'qemu', '/dev/kvm alone proves nothing');
  t.equal(resolveDomainType('qemu', { cpuinfo: intel, kvmDevice: true }), 'qemu', 'explicit config wins');
  t.equal(resolveDomainType('kvm', { cpuinfo: '', kvmDevice: false }), 'kvm');
  t.equal(resolveDomainType('auto', { cpuinfo: amd, kvmDevice: true }), 'kvm');
});

t.test('this host agrees with scripts/host/domain-type', async (t) => {
  const script = join(import.meta.dirname, '..', '..', '..', 'scripts', 'host', 'domain-type');
  const r = await run(script, [], { timeoutMs: 10_000 });
  t.equal(hostDomainType(), r.stdout.trim(), `both say ${r.stdout.trim()}`);
  t.equal(typeof readHostFacts().cpuinfo, 'string');
});
