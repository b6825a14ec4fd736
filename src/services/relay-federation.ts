/**
 * `wzp relay` federation settings (docs/federation.md): the [[peers]], [[trusted]] and
 * [[global_rooms]] of a config file or the --peer, --trusted and --global-room flags, checked
 * and turned into what core/federation/ takes (addresses parsed, fingerprints normalised,
 * room names hashed as clients hash them: the relay keeps only room ids).
 */
import { parseFingerprint } from '../../core/crypto/fingerprint.js';
import { hashRoomName } from '../../core/crypto/room-name.js';
import { isWzpError, UsageError } from '../../core/errors.js';
import type { FederationPeer } from '../../core/federation/federation.js';
import type { GlobalRoomConfig, PeerRelayConfig } from '../../core/relay/config.js';
import { parseDialTarget } from '../../core/transport/quic.js';

export interface FederationSettings {
  peers: PeerRelayConfig[];
  trusted: string[];
  globalRooms: GlobalRoomConfig[];
}

/** `--peer HOST:PORT=FINGERPRINT`. UsageError if malformed. */
export function parsePeerFlag(text: string): PeerRelayConfig {
  const eq = text.lastIndexOf('=');
  if (eq <= 0 || eq === text.length - 1) {
    throw new UsageError(`--peer "${text}" is not HOST:PORT=FINGERPRINT`, {
      suggestions: ["e.g. --peer relay2.example.org:4433=1a2b:...:7e8f (the other relay's address and certificate fingerprint)"],
    });
  }
  return { address: text.slice(0, eq).trim(), fingerprint: text.slice(eq + 1).trim() };
}

/** `--global-room NAME` (or `id:HEX` for a room with a secret). */
export function parseGlobalRoomFlag(text: string): GlobalRoomConfig {
  return text.startsWith('id:') ? { id: text.slice(3) } : { name: text };
}

/** What the relay core takes: peers to dial, fingerprints to accept, global room ids. UsageError for a bad entry. */
export function resolveFederation(f: FederationSettings): { peers: FederationPeer[]; trusted: string[]; globalRooms: string[] } {
  const fingerprint = (text: string, what: string): string => {
    try {
      return parseFingerprint(text);
    } catch (err) {
      if (!isWzpError(err)) throw err;
      throw new UsageError(`${what}: "${text}" is not a fingerprint (${err.message})`);
    }
  };
  const peers = f.peers.map((p) => {
    let address;
    try {
      address = parseDialTarget(p.address);
    } catch (err) {
      if (!isWzpError(err)) throw err;
      throw new UsageError(`peer ${p.address}: ${err.message}`, { suggestions: ['HOST:PORT where the other relay listens, e.g. relay2.example.org:4433'] });
    }
    return { address, fingerprint: fingerprint(p.fingerprint, `peer ${p.address}`) };
  });
  const trusted = f.trusted.map((t) => fingerprint(t, 'trusted relay'));
  const globalRooms = f.globalRooms.map((r) => {
    if (r.id !== undefined) {
      const id = r.id.toLowerCase();
      if (!/^[0-9a-f]{32}$/.test(id)) throw new UsageError(`global room id:${r.id}: the id must be 32 hex digits`);
      return id;
    }
    try {
      return hashRoomName(r.name ?? '');
    } catch (err) {
      throw new UsageError(`global room "${r.name ?? ''}": ${(err as Error).message}`);
    }
  });
  return { peers, trusted, globalRooms: [...new Set(globalRooms)] };
}
