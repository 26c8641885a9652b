// Owns: the union of every area's actions and services, and sending an action to its area.
// Must not: see HTTP (server.ts) or parse input (areas/*.ts parse; routes.ts matches).
import { KilnError } from '../errors.js';
import type { Progress, Reply } from './types.js';
import { handleSystem, type SystemAction, type SystemServices } from './areas/system.js';
import { handleInstances, isInstanceAction, type InstanceAction, type InstanceServices } from './areas/instances.js';
import { handleDisks, isDiskAction, type DiskAction, type DiskServices } from './areas/disks.js';
import { handleImages, isImageAction, type ImageAction, type ImageServices } from './areas/images.js';

export type { Progress, Reply } from './types.js';
export type { SystemService } from './areas/system.js';

// One member per API area.
export type Action = SystemAction | InstanceAction | DiskAction | ImageAction;

/** Services main wiring provides. Areas whose service is absent answer KILN_UNAVAILABLE. */
export type ApiServices = SystemServices & InstanceServices & DiskServices & ImageServices;

const SYSTEM_KINDS = new Set(['health', 'status', 'metrics']);

export async function dispatch(action: Action, services: ApiServices, progress: Progress): Promise<Reply> {
  if (SYSTEM_KINDS.has(action.kind)) return handleSystem(action as SystemAction, services, progress);
  if (isInstanceAction(action)) return handleInstances(action, services, progress);
  if (isDiskAction(action)) return handleDisks(action, services, progress);
  if (isImageAction(action)) return handleImages(action, services, progress);
  throw new KilnError('KILN_INTERNAL', `no handler for action ${action.kind}`);
}

/** For areas whose service is optional in the wiring. */
export function need<T>(service: T | undefined, what: string): T {
  if (!service) throw new KilnError('KILN_UNAVAILABLE', `${what} is not available in this kilnd`);
  return service;
}
