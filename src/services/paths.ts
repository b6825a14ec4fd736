/** Where wzp keeps its files inside the config directory. */
import { join } from 'node:path';

export const identityFile = (configDir: string): string => join(configDir, 'identity.json');
export const relayIdentityFile = (configDir: string): string => join(configDir, 'relay-identity.json');
export const pinFile = (configDir: string): string => join(configDir, 'known-relays.json');
export const knownMembersFile = (configDir: string): string => join(configDir, 'known-members.json');
