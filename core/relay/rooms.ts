/**
 * SFU rooms: which participants are in which room, and media fan-out.
 *
 * A room is identified by a hash of its name (core/crypto/room-name.ts): the relay never sees
 * the name. The relay forwards each participant's media datagrams, still end-to-end
 * encrypted, to every other participant in the room, prefixed with the sender's source id so
 * receivers know whose keys and jitter buffer a packet belongs to (core/wire/room-source.ts:
 * the tag's layout and codec).
 *
 * Congestion: a participant whose QUIC datagram queue backs up gets its oldest queued media
 * purged (stale audio is worthless) instead of blocking the room or dropping the newest.
 *
 * Announcements: a member may join with its signed announcement (its session key, signed by
 * its identity key: core/crypto/sender-keys.ts). The relay cannot read or forge anything with
 * it; it only saves round trips: the others get it with the join notice (room-update), and
 * later joiners get every member's in their `joined` answer. That takes the newcomer's
 * announcement hop (newcomer -> relay -> member) off the path to its first audio: join ->
 * first audio in the call bench went from a median of 56-90 ms to 34 ms (with the jitter
 * buffer's start-up changes; docs/media-engine.md). At most MAX_ANNOUNCEMENT_BYTES each, so
 * a full room's (64) fit in one `joined` answer.
 */
import { DecodeError, InternalError } from '../errors.js';
import type { DatagramChannel } from '../transport/datagrams.js';
import { MAX_DATAGRAM_BYTES } from '../wire/datagram.js';
import { encodeRoomMediaToClient } from '../wire/media-path.js';
import { decodeRoomDatagram, type TaggedDatagram } from '../wire/room-source.js';
import { encodeSignal, type KnownSignalMessage } from '../wire/signal.js';

/** Bytes the relay prepends to every forwarded room datagram (core/wire/room-source.ts). */
export { SOURCE_ID_BYTES } from '../wire/room-source.js';
/** Room participants at most; more joins are refused. */
export const MAX_ROOM_PARTICIPANTS = 64;
/** Queued outgoing datagrams per participant before stale ones are purged (~8 frames). */
export const MAX_QUEUED_DATAGRAMS = 8;

export interface RoomMember {
  readonly sourceId: number;
  /** The source address it connects from (core/transport/quic-gate.ts sourceKey), for per-source limits. */
  readonly source: string;
  readonly alias: string;
  /** Identity fingerprint the client claims (authenticated end to end by the members). */
  readonly fingerprint: string;
  readonly datagrams: RoomChannel;
  /** The signed announcement the member joined with (opaque to the relay), if any. */
  readonly announcement?: Record<string, unknown>;
  /** Deliver a signalling message, already encoded (encodeSignal), to this member (relay push). */
  push(frame: Uint8Array): void;
  /**
   * A member on another relay of a federation (core/federation/federation.ts): in the roster
   * like the others, but its media and signals go over relay links, so forward() skips it.
   */
  readonly remote?: boolean;
}

/**
 * A member's datagrams. A channel that can also take the UDP media path's packet (the relay's
 * RelayRoute, core/transport/udp-media.ts) gets both forms of a forwarded datagram, built
 * once for all receivers (encodeRoomMediaToClient), and sends the one its path needs.
 */
export type RoomChannel = DatagramChannel & { sendRoomMedia?(packet: Uint8Array, tagged: Uint8Array): boolean };

/** A member as the roster names it. */
export interface RoomParticipantEntry {
  sourceId: number;
  alias: string;
  fingerprint: string;
}

/** A member's announcement as the relay hands it on. */
export interface AnnouncementEntry {
  sourceId: number;
  announcement: Record<string, unknown>;
}

function rosterEntry(m: RoomMember): RoomParticipantEntry {
  return { sourceId: m.sourceId, alias: m.alias, fingerprint: m.fingerprint };
}

export interface ForwardStats {
  forwarded: number;
  /** Datagrams not sent because a receiver's queue was full or the datagram too large. */
  dropped: number;
  /** Stale datagrams purged from receivers' queues under congestion. */
  purged: number;
}

export class Room {
  readonly members = new Map<number, RoomMember>();
  constructor(readonly id: string) {}

  roster(): RoomParticipantEntry[] {
    return [...this.members.values()].map(rosterEntry);
  }

  /** The announcements members joined with, except `except`'s. */
  announcements(except?: number): { sourceId: number; announcement: Record<string, unknown> }[] {
    const out: { sourceId: number; announcement: Record<string, unknown> }[] = [];
    for (const m of this.members.values()) {
      if (m.sourceId !== except && m.announcement !== undefined) out.push({ sourceId: m.sourceId, announcement: m.announcement });
    }
    return out;
  }
}

/** The largest relay prefix of source ids (16 bits: core/wire/room-source.ts). */
export const MAX_SOURCE_PREFIX = 0xffff;

/**
 * The source-id prefix a relay takes unless its config sets one: the first 16 bits of its
 * certificate fingerprint (a hash, so two relays share one with probability 1/65536 per pair;
 * a federation refuses a link between relays with one prefix, and drops a member whose id
 * another member already holds, both with a message naming `source_id_prefix`).
 */
export function sourcePrefixOf(fingerprint: string): number {
  const hex = fingerprint.replace(/[^0-9a-f]/gi, '').slice(0, 4);
  return hex.length === 4 ? Number.parseInt(hex, 16) : 0;
}

export class RoomManager {
  private readonly rooms = new Map<string, Room>();
  private nextMember = 1;
  /** Told after a member joined or left any room (the relay's media plane replans: ./media-plane.ts). */
  onChange: (() => void) | undefined;

  /**
   * `stats`: where forwarding is counted (the relay passes its metrics owner's: ./metrics.ts).
   * `sourcePrefix`: the high 16 bits of every source id this relay gives its members
   * (core/wire/room-source.ts; sourcePrefixOf() of its fingerprint unless configured).
   */
  constructor(
    readonly stats: ForwardStats = { forwarded: 0, dropped: 0, purged: 0 },
    readonly sourcePrefix = 0,
  ) {
    if (!Number.isInteger(sourcePrefix) || sourcePrefix < 0 || sourcePrefix > MAX_SOURCE_PREFIX) throw new InternalError(`source id prefix ${sourcePrefix}, must be 0-${MAX_SOURCE_PREFIX}`);
  }

  get roomCount(): number {
    return this.rooms.size;
  }

  /** Members in all rooms (a loop over the rooms: for scrapes, not per packet). */
  get memberCount(): number {
    let n = 0;
    for (const room of this.rooms.values()) n += room.members.size;
    return n;
  }

  /**
   * Allocate a source id for a member of this relay: this relay's prefix and a member number
   * 1-65535, skipping ids in use. Ids of members of other relays (federation) have their
   * relays' prefixes.
   */
  allocateSourceId(): number {
    for (let tries = 0; tries < 0xffff; tries++) {
      const n = this.nextMember;
      this.nextMember = n === 0xffff ? 1 : n + 1;
      const id = this.sourcePrefix * 0x1_0000 + n;
      if (!this.inUse(id)) return id;
    }
    throw new Error('no free source id');
  }

  /** Whether a member of any room here has source id `id`. */
  inUse(id: number): boolean {
    for (const room of this.rooms.values()) if (room.members.has(id)) return true;
    return false;
  }

  /**
   * Whether `member` may join `roomId` (replacing `replaces`, the same member back after
   * losing its connection): the room has room for it and its source is under its share.
   * On success, the roster and the others' announcements it would be answered with.
   */
  planJoin(
    roomId: string,
    member: RoomMember,
    replaces: number | undefined,
    limits: { roomSize: number; membersPerSource: number },
  ):
    | { refused: 'room-full' | 'room-source-limit' }
    | { replaced: number | undefined; participants: RoomParticipantEntry[]; announcements: AnnouncementEntry[] } {
    const room = this.rooms.get(roomId);
    const replaced = replaces !== undefined && room?.members.has(replaces) ? replaces : undefined;
    const others = [...(room?.members.values() ?? [])].filter((m) => m.sourceId !== replaced);
    if (others.length >= Math.min(limits.roomSize, MAX_ROOM_PARTICIPANTS)) return { refused: 'room-full' };
    if (others.filter((m) => m.source === member.source).length >= limits.membersPerSource) return { refused: 'room-source-limit' };
    const members = [...others, member];
    return {
      replaced,
      participants: members.map(rosterEntry),
      announcements: others.flatMap((m) => (m.announcement === undefined ? [] : [{ sourceId: m.sourceId, announcement: m.announcement }])),
    };
  }

  /**
   * Add a member planned with planJoin() (nothing may have changed the room in between: call
   * both in one synchronous step) and announce the join to the others; `replaced` is removed
   * in the same announcement, so the others see one change.
   */
  commitJoin(roomId: string, member: RoomMember, replaced: number | undefined): Room {
    let room = this.rooms.get(roomId);
    if (!room) {
      room = new Room(roomId);
      this.rooms.set(roomId, room);
    }
    if (replaced !== undefined) room.members.delete(replaced);
    room.members.set(member.sourceId, member);
    this.onChange?.();
    this.announce(room, {
      joined: member.sourceId,
      ...(replaced === undefined ? {} : { left: replaced }),
      ...(member.announcement ? { announcement: member.announcement } : {}),
    });
    return room;
  }

  /** The member of a room whose announcement is for this session (its X25519 key) and identity. */
  memberWithSession(roomId: string, session: string, fingerprint: string): RoomMember | undefined {
    for (const m of this.rooms.get(roomId)?.members.values() ?? []) {
      if (m.announcement?.x25519PublicKey === session && m.announcement.fingerprint === fingerprint) return m;
    }
    return undefined;
  }

  /** Remove a member and announce it to the others at once; empty rooms are dropped. */
  leave(roomId: string, sourceId: number): void {
    const room = this.rooms.get(roomId);
    if (!room || !room.members.delete(sourceId)) return;
    this.onChange?.();
    if (room.members.size === 0) this.rooms.delete(roomId);
    else this.announce(room, { left: sourceId });
  }

  private announce(room: Room, change: { joined?: number; left?: number; announcement?: Record<string, unknown> }): void {
    const message = { type: 'room-update', room: room.id, participants: room.roster(), ...change };
    // Encoded once for all: in a filling room every join tells every member the whole roster.
    const frame = encodeRoomMessage(message);
    if (frame === undefined) return;
    for (const m of room.members.values()) m.push(frame);
  }

  /** The room, if it has members (for the relay's debug tap: ./debug-tap.ts). */
  room(roomId: string): Room | undefined {
    return this.rooms.get(roomId);
  }

  /** Forward one member's datagram to every other member of its room; returns the copies sent. */
  forward(roomId: string, from: number, datagram: Uint8Array): number {
    const room = this.rooms.get(roomId);
    if (!room || room.members.size < 2) return 0;
    if (datagram.byteLength < 1 || datagram.byteLength > MAX_DATAGRAM_BYTES) {
      // Nothing a member could use (an empty or oversized QUIC datagram from a hostile client).
      this.stats.dropped += room.members.size - 1;
      return 0;
    }
    // One buffer for every receiver: the path packet, and the tagged datagram as a view of it.
    const { packet, tagged } = encodeRoomMediaToClient(from, datagram);
    let sent = 0;
    for (const [id, member] of room.members) {
      if (id === from || member.remote === true) continue;
      const channel = member.datagrams;
      this.stats.purged += channel.purgeIfQueued(MAX_QUEUED_DATAGRAMS);
      if (channel.sendRoomMedia ? channel.sendRoomMedia(packet, tagged) : channel.send(tagged)) {
        this.stats.forwarded++;
        sent++;
      } else this.stats.dropped++;
    }
    return sent;
  }

  /** Relay a member's signalling payload to one member (`to`) or all others. */
  relaySignal(roomId: string, from: number, to: number | undefined, payload: object): number {
    const room = this.rooms.get(roomId);
    if (!room) return 0;
    let delivered = 0;
    let frame: Uint8Array | undefined;
    for (const [id, member] of room.members) {
      if (id === from || (to !== undefined && id !== to)) continue;
      frame ??= encodeRoomMessage({ type: 'relayed', room: roomId, from, payload });
      if (frame === undefined) return 0;
      member.push(frame);
      delivered++;
    }
    return delivered;
  }
}

/**
 * A room message as a signal frame; undefined if it cannot be one (over the signal size
 * limit: the relay bounds what goes into room messages so this does not happen).
 */
function encodeRoomMessage(message: object): Uint8Array | undefined {
  try {
    return encodeSignal(message as KnownSignalMessage);
  } catch {
    return undefined;
  }
}

/**
 * Split a forwarded room datagram into the sender's source id and its datagram (a view);
 * undefined if it is not one (decodeRoomDatagram's DecodeError, for callers that count drops).
 */
export function untagRoomDatagram(d: Uint8Array): TaggedDatagram | undefined {
  try {
    return decodeRoomDatagram(d);
  } catch (err) {
    if (err instanceof DecodeError) return undefined;
    throw err;
  }
}
