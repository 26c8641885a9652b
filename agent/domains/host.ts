// Owns: deciding which libvirt domain type this host can really run.
// Must not: trust /dev/kvm alone (a paravirtual KVM exposes it but cannot run a normal guest);
// kvm needs hardware virtualization flags (vmx/svm) AND a /dev/kvm this process can open.
import { accessSync, constants, readFileSync } from 'node:fs';

export interface HostFacts {
  /** Contents of /proc/cpuinfo. */
  cpuinfo: string;
  /** Whether /dev/kvm exists and is readable and writable. */
  kvmDevice: boolean;
}

export function readHostFacts(): HostFacts {
  let cpuinfo = '';
  try { cpuinfo = readFileSync('/proc/cpuinfo', 'utf8'); } catch { /* no procfs: no kvm */ }
  let kvmDevice = false;
  try { accessSync('/dev/kvm', constants.R_OK | constants.W_OK); kvmDevice = true; } catch { /* absent or denied */ }
  return { cpuinfo, kvmDevice };
}

/** True when a `flags` line of cpuinfo lists vmx (Intel VT-x) or svm (AMD-V). */
export function hasHardwareVirt(cpuinfo: string): boolean {
  return cpuinfo.split('\n').some((line) => /^flags\s*:/.test(line) && /(^|\s)(vmx|svm)(\s|$)/.test(line.slice(line.indexOf(':') + 1)));
}

/** 'kvm' only where hardware virtualization is exposed and /dev/kvm is usable; else 'qemu' (TCG). */
export function hostDomainType(facts: HostFacts = readHostFacts()): 'kvm' | 'qemu' {
  return facts.kvmDevice && hasHardwareVirt(facts.cpuinfo) ? 'kvm' : 'qemu';
}

/** The config key domainType: 'auto' asks the host; an explicit value is the operator's choice. */
export function resolveDomainType(configured: string, facts?: HostFacts): 'kvm' | 'qemu' {
  if (configured === 'kvm' || configured === 'qemu') return configured;
  return hostDomainType(facts);
}
