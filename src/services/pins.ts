/** `wzp pins`: inspect and edit the relay pin store. */
import { PinStore, type PinnedRelay } from '../../core/transport/pin-store.js';
import { pinFile } from './paths.js';

export interface PinListing {
  path: string;
  pins: PinnedRelay[];
}

export interface ForgetReport {
  relay: string;
  forgotten: boolean;
}

export async function listPins(configDir: string): Promise<PinListing> {
  const store = await PinStore.open(pinFile(configDir));
  return { path: store.path, pins: store.list() };
}

export async function forgetPin(configDir: string, relay: string): Promise<ForgetReport> {
  const store = await PinStore.open(pinFile(configDir));
  const forgotten = store.forget(relay);
  if (forgotten) await store.save();
  return { relay, forgotten };
}
