// Owns: the file set of an OpenStack config drive (label "config-2") as cloud-init's ConfigDrive
// datasource reads it: openstack/{latest,2015-10-15}/ with meta_data.json, user_data,
// network_data.json, vendor_data.json, and ec2/{latest,2009-04-04}/ with meta-data.json, user-data.
// Must not: write ISO bytes or read files. cloud-init takes the instance-id from meta_data.json's
// "uuid", so that is where the seed's identity goes.
import type { IsoFileInput } from './iso9660/writer.js';
import { EMPTY_CLOUD_CONFIG, checkNetworkData, checkUserData } from './content.js';
import { KilnError } from '../errors.js';
import type { CheckedSpec } from './spec.js';

export const CONFIGDRIVE_LABEL = 'config-2';
/** The dated folder: Liberty's, the first with network_data.json, read by every cloud-init since 0.7.7. */
export const OPENSTACK_VERSION = '2015-10-15';
export const EC2_VERSION = '2009-04-04';

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

export function configDriveMetaData(spec: CheckedSpec): Record<string, unknown> {
  const names = spec.sshKeys.map((_, i) => `key-${i + 1}`);
  return {
    uuid: spec.uuid ?? spec.instanceId,
    name: spec.hostname,
    hostname: spec.hostname,
    launch_index: 0,
    public_keys: Object.fromEntries(spec.sshKeys.map((k, i) => [names[i]!, k])),
    keys: spec.sshKeys.map((k, i) => ({ name: names[i]!, type: 'ssh', data: k })),
    meta: { 'kiln-instance-id': spec.instanceId },
  };
}

export function configDriveFiles(spec: CheckedSpec): IsoFileInput[] {
  if (spec.metaData) {
    throw new KilnError('KILN_BAD_REQUEST', 'a meta-data file applies to the nocloud format; config-drive meta_data.json is built from instance-id, hostname and SSH keys',
      { file: 'meta-data', reason: 'meta-data override with config-drive' });
  }
  const userData = spec.userData ?? EMPTY_CLOUD_CONFIG;
  checkUserData('user-data', userData);
  if (spec.networkConfig) checkNetworkData('network-config', spec.networkConfig);
  let vendorJson: Buffer = json({});
  if (spec.vendorData) {
    checkUserData('vendor-data', spec.vendorData);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(spec.vendorData);
    } catch {
      throw new KilnError('KILN_BAD_REQUEST', 'vendor-data: config-drive carries vendor data inside JSON, so it must be UTF-8 text',
        { file: 'vendor-data', reason: 'vendor-data is not UTF-8' });
    }
    // cloud-init takes vendor_data.json's "cloud-init" value as the vendor data.
    vendorJson = json({ 'cloud-init': text });
  }
  const metaJson = json(configDriveMetaData(spec));
  const ec2Meta = json({
    'instance-id': spec.instanceId,
    hostname: spec.hostname,
    'local-hostname': spec.hostname,
    'ami-launch-index': 0,
    'public-keys': Object.fromEntries(spec.sshKeys.map((k, i) => [String(i), { 'openssh-key': k }])),
  });
  const files: IsoFileInput[] = [];
  for (const version of ['latest', OPENSTACK_VERSION]) {
    const dir = `openstack/${version}`;
    files.push({ path: `${dir}/meta_data.json`, data: metaJson });
    files.push({ path: `${dir}/user_data`, data: userData });
    files.push({ path: `${dir}/vendor_data.json`, data: vendorJson });
    if (spec.networkConfig) files.push({ path: `${dir}/network_data.json`, data: spec.networkConfig });
  }
  for (const version of ['latest', EC2_VERSION]) {
    files.push({ path: `ec2/${version}/meta-data.json`, data: ec2Meta });
    files.push({ path: `ec2/${version}/user-data`, data: userData });
  }
  return files;
}
