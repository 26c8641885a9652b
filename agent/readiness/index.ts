// Owns: the public face of readiness (what instances/ and daemon.ts import): waitForCloudInit,
// runOverSsh, AgentKeys and the console host-key reader.
// Must not: hold state or logic of its own.
export { waitForCloudInit, type WaitOptions, type CloudInitDone } from './wait.js';
export { runOverSsh, type SshTarget } from './ssh.js';
export { AgentKeys } from './keys.js';
export { hostKeysFromConsole, fingerprint } from './host-key.js';
export { parseCloudInitStatus, type CloudInitVerdict } from './cloud-init-status.js';
