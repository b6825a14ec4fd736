/**
 * What a room call needs of its link to the relay: RelaySession is one; a test can hand the
 * call a wrapper of one (to drop or alter what goes through it) instead of patching the
 * session's or the relay's internals.
 */
import type { KnownSignal } from '../transport/signal-stream.js';
import type { MediaTransport } from '../transport/media-transport.js';
import type { SupervisedLink } from './link-supervisor.js';
import type { RoomJoin } from './relay-session.js';
import type { Identity } from '../crypto/identity.js';

export type { RoomJoin };

export interface RoomJoinOptions {
  alias?: string;
  fingerprint?: string;
  /** Our signed announcement: the relay hands it to the members with the join notice. */
  announcement?: Record<string, unknown>;
  /** Proves it to a relay that restricts the room to listed identities (when the relay asks). */
  identity?: Identity;
  /** The room's name, for a refusal's message (the relay knows only the id). */
  roomName?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface RoomCallSession extends SupervisedLink {
  /** Join a room by its id; our source id, the roster and (from relays that keep them) the announcements. */
  joinRoom(room: string, opts?: RoomJoinOptions): Promise<RoomJoin>;
  /** Receive what the relay pushes (room updates, members' room signals). */
  onPush(listener: (msg: KnownSignal) => void): void;
  /** An opaque payload to one member (by source id) or all others. */
  roomSignal(payload: Record<string, unknown>, to?: number, opts?: { timeoutMs?: number; signal?: AbortSignal }): Promise<void>;
  /** Leave the room at once (the relay tells the others). */
  leave(opts?: { timeoutMs?: number; signal?: AbortSignal }): Promise<void>;
  /** The media to and from the relay (room media arrives tagged with the sender's source id). */
  readonly mediaTransport: MediaTransport;
  /** Which path our media takes now. */
  mediaPathStats(): { path: 'udp' | 'quic' };
}
