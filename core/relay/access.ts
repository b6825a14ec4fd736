/**
 * Room ACLs (docs/relay-operations.md "Room ACLs"): rooms an operator restricts to listed
 * identities. The relay knows rooms only by id (core/crypto/room-name.ts), so a room given by
 * name is hashed at load exactly as clients hash it; a room with a secret has an id that
 * depends on the secret, and must be given by `id`. Only the ids are kept.
 *
 * A member of a restricted room must have proved its identity on its connection first (the
 * presence registration: a signature over the relay's per-connection challenge,
 * ./presence.ts); the fingerprint a join claims is never trusted.
 */
import { parseFingerprint } from '../crypto/fingerprint.js';
import { hashRoomName } from '../crypto/room-name.js';
import { UsageError, isWzpError } from '../errors.js';

/** One restricted room, as configured (`[[rooms]]` in the config file, `--acl` on the command line). */
export interface RoomAcl {
  /** The room's name (rooms without a secret)... */
  name?: string;
  /** ...or its 32-hex-digit id (required for a room with a secret: the call report's `roomId`). */
  id?: string;
  /** Identity fingerprints admitted (any spelling parseFingerprint accepts). */
  allow: string[];
}

/** The restricted rooms by id, with their allowed fingerprints (canonical). */
export type RoomAclTable = ReadonlyMap<string, ReadonlySet<string>>;

const ROOM_ID_RE = /^[0-9a-fA-F]{32}$/;

/** Check and resolve ACLs; UsageError naming the entry at fault. */
export function resolveRoomAcls(acls: readonly RoomAcl[] | undefined): RoomAclTable {
  const table = new Map<string, ReadonlySet<string>>();
  for (const [i, acl] of (acls ?? []).entries()) {
    const hasName = acl.name !== undefined;
    const hasId = acl.id !== undefined;
    const label = hasName ? `room "${acl.name}"` : hasId ? `room ${acl.id}` : `room ACL ${i + 1}`;
    if (hasName === hasId) throw new UsageError(`${label}: give exactly one of name and id`, { suggestions: ['a room with a secret needs its id (32 hex digits)'] });
    let id: string;
    if (hasId) {
      if (!ROOM_ID_RE.test(acl.id!)) throw new UsageError(`${label}: the id must be 32 hex digits`);
      id = acl.id!.toLowerCase();
    } else {
      try {
        id = hashRoomName(acl.name!);
      } catch (err) {
        throw new UsageError(`${label}: ${(err as Error).message}`);
      }
    }
    if (!Array.isArray(acl.allow) || acl.allow.length === 0) throw new UsageError(`${label}: allow must list at least one identity fingerprint`);
    const allowed = new Set<string>();
    for (const fp of acl.allow) {
      try {
        allowed.add(parseFingerprint(String(fp)));
      } catch (err) {
        if (!isWzpError(err)) throw err;
        throw new UsageError(`${label}: "${String(fp)}" is not a fingerprint (${err.message})`);
      }
    }
    if (table.has(id)) throw new UsageError(`${label} is listed twice (merge its allow lists into one entry)`);
    table.set(id, allowed);
  }
  return table;
}

/**
 * `--acl ROOM=FP,FP`: ROOM is a name, or `id:HEX` for a room id. UsageError if malformed.
 */
export function parseAclFlag(text: string): RoomAcl {
  const eq = text.lastIndexOf('=');
  if (eq <= 0 || eq === text.length - 1) {
    throw new UsageError(`--acl "${text}" is not ROOM=FINGERPRINT[,FINGERPRINT...]`, { suggestions: ['e.g. --acl team=1a2b:...:7e8f,9c0d:...:1e2f (id:HEX for a room with a secret)'] });
  }
  const room = text.slice(0, eq);
  const allow = text.slice(eq + 1).split(',').map((s) => s.trim()).filter((s) => s !== '');
  return room.startsWith('id:') ? { id: room.slice(3), allow } : { name: room, allow };
}
