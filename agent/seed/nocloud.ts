// Owns: the file set of a NoCloud seed (label "cidata"): user-data, meta-data, network-config and
// vendor-data at the root, as cloud-init's NoCloud datasource and cloud-localds lay them out.
// Must not: write ISO bytes (the writer does) or read files (callers hand in buffers).
import { stringify } from 'yaml';
import type { IsoFileInput } from './iso9660/writer.js';
import { EMPTY_CLOUD_CONFIG, checkNetworkConfig, checkUserData, parseMetaData } from './content.js';
import type { CheckedSpec } from './spec.js';

export const NOCLOUD_LABEL = 'cidata';

/** The meta-data kiln writes when none is given: instance-id, local-hostname, public-keys. */
export function nocloudMetaData(spec: Pick<CheckedSpec, 'instanceId' | 'hostname' | 'sshKeys'>): Buffer {
  const doc: Record<string, unknown> = { 'instance-id': spec.instanceId, 'local-hostname': spec.hostname };
  if (spec.sshKeys.length > 0) doc['public-keys'] = [...spec.sshKeys];
  return Buffer.from(stringify(doc, { version: '1.1', lineWidth: 0 }), 'utf8');
}

export function nocloudFiles(spec: CheckedSpec): IsoFileInput[] {
  const userData = spec.userData ?? EMPTY_CLOUD_CONFIG;
  checkUserData('user-data', userData);
  let metaData: Buffer;
  if (spec.metaData) {
    // An operator's meta-data passes through as given (cloud-localds does the same); it must parse.
    parseMetaData('meta-data', spec.metaData);
    metaData = spec.metaData;
  } else {
    metaData = nocloudMetaData(spec);
  }
  const files: IsoFileInput[] = [
    { path: 'user-data', data: userData },
    { path: 'meta-data', data: metaData },
  ];
  if (spec.networkConfig) {
    checkNetworkConfig('network-config', spec.networkConfig);
    files.push({ path: 'network-config', data: spec.networkConfig });
  }
  if (spec.vendorData) {
    checkUserData('vendor-data', spec.vendorData);
    files.push({ path: 'vendor-data', data: spec.vendorData });
  }
  return files;
}
