/**
 * The relay's debug tap (`wzp relay --debug-tap ROOM|*`): one log line per media packet of the
 * tapped room(s), with what the relay can read of it in the clear and nothing else.
 *
 * A room member's media datagram is a media header (full or mini, core/wire/media-header.ts and
 * mini-header.ts) or a trunk frame of several (core/wire/trunk.ts), then the sealed payload
 * (core/crypto/media-crypto.ts: key epoch's low 8 bits, packet counter, ciphertext, tag). The
 * header is in the clear (it is the AEAD's associated data, authenticated but not encrypted);
 * nothing here decrypts, and no payload byte is ever logged.
 *
 * What a line holds (`fields` handed to `write`, the CLI prints them as
 * `ISO-time relay:tap {json}` like its other log lines):
 *
 * - dir: 'in' (a member's packet reached the relay) or 'out' (one forwarded copy).
 * - room: the room id's first 8 hex digits. src: the sender's source id. to ('out'): the receiver's.
 * - path: 'udp' (the UDP media path) or 'quic' (QUIC datagrams), for that hop.
 * - size: the datagram's bytes ('in': as the member sent it; 'out': with the source id tag).
 * - kind: 'full' | 'mini' | 'trunk' | 'malformed'.
 *   full: seq, ts, codec (id), tier (GOOD/DEGRADED/CATASTROPHIC), frameMs, fec {scheme, block,
 *   symbol, k, r, repair}, and report (the piggybacked quality report) if present.
 *   mini: what a mini header carries without its context (the receiver's last full header):
 *   seqLow13 (the sequence's low 13 bits), fecBlockLow8, fecSymbol, repair. Codec and tier are
 *   the context's: the tap does not track contexts.
 *   trunk: packets (how many), and each packet's header as above in `entries`.
 *   malformed: error (the decoder's reason); such a packet is still forwarded as the relay
 *   forwards every datagram, the tap only reads it.
 * - epoch: the sealed payload's key epoch (low 8 bits), when the packet is long enough.
 * - fanout ('in'): copies forwarded; dropped: copies not sent (a receiver's queue full, too large).
 * - refused ('in'): the relay did not forward it (`media-rate`: over the member's media cap).
 * - suppressed: lines not written since the previous one, by the rate limit.
 *
 * Rate limit: at most `linesPerSecond` lines a second (default DEBUG_TAP_LINES_PER_SECOND),
 * with a burst of as many; the rest are counted and reported in the next line's `suppressed`
 * (and in `stats`). So a tap on a busy relay costs at most that many lines, and the work of
 * parsing the packets whose lines are written: a packet whose line would be suppressed is
 * not parsed at all (`stats.malformed` counts the malformed packets among those parsed).
 *
 * Off, it costs the relay one property check per media packet (`Relay` holds no tap).
 */
import { DecodeError, UsageError } from '../errors.js';
import { hashRoomName } from '../crypto/room-name.js';
import { SEALED_OFFSET_EPOCH } from '../crypto/media-crypto.js';
import { datagramKind, isMiniHeader } from '../wire/datagram.js';
import { decodeMediaHeader, type MediaHeader } from '../wire/media-header.js';
import { MINI_HEADER_BYTES, MINI_SEQUENCE_BITS, OFFSET_MINI_FEC_BLOCK, OFFSET_MINI_FEC_SYMBOL, OFFSET_MINI_SEQUENCE } from '../wire/mini-header.js';
import { decodeTrunk } from '../wire/trunk.js';
import { TokenBucket } from '../net/rate-limit.js';

/** Lines a tap writes per second at most, unless told otherwise (the burst is as many). */
export const DEBUG_TAP_LINES_PER_SECOND = 50;
/** Most trunk entries described in one line (a trunk holds up to 128). */
const MAX_TRUNK_ENTRIES_LOGGED = 16;
const ROOM_ID_RE = /^[0-9a-f]{32}$/;
const ROOM_PREFIX_CHARS = 8;
const TIER_NAMES = ['GOOD', 'DEGRADED', 'CATASTROPHIC'] as const;
/** The mini header's first u16: mark (2 bits), repair flag, then the sequence's low 13 bits (core/wire/mini-header.ts). */
const MINI_SEQUENCE_MASK = (1 << MINI_SEQUENCE_BITS) - 1;
const MINI_REPAIR_FLAG = 1 << MINI_SEQUENCE_BITS;

/** Which rooms a tap watches: one room id, or every room. */
export type DebugTapTarget = { room: string } | { all: true };

/**
 * `--debug-tap` as typed: `*` (every room), a 32-hex-digit room id, `name:NAME` or any other
 * text (a room name, hashed as clients hash a name without a secret: core/crypto/room-name.ts;
 * a room with a secret is tapped by its id). Throws UsageError for an empty or invalid name.
 */
export function parseDebugTapTarget(text: string): DebugTapTarget {
  if (text === '*') return { all: true };
  const lower = text.trim().toLowerCase();
  if (ROOM_ID_RE.test(lower)) return { room: lower };
  const name = text.startsWith('name:') ? text.slice('name:'.length) : text;
  if (name === '') {
    throw new UsageError('--debug-tap needs a room name, a 32-hex-digit room id or *', {
      suggestions: ['--debug-tap "team standup"', '--debug-tap 0123456789abcdef0123456789abcdef', "--debug-tap '*' (every room)"],
    });
  }
  return { room: hashRoomName(name) };
}

/** One media packet's header fields, as a tap line holds them. */
export type TapHeaderFields = Record<string, unknown>;

export interface DebugTapOptions {
  target: DebugTapTarget;
  /** Where lines go (the CLI: stderr as `ISO-time relay:tap {json}`). Must not throw; a throw is swallowed. */
  write(fields: Record<string, unknown>): void;
  /** At most this many lines a second (default DEBUG_TAP_LINES_PER_SECOND), 1-100000. */
  linesPerSecond?: number;
}

export interface DebugTapStats {
  /** Lines written. */
  lines: number;
  /** Lines not written because of the rate limit. */
  suppressed: number;
  /** Packets whose datagram did not parse as media, of those a line was written for. */
  malformed: number;
}

export class DebugTap {
  readonly stats: DebugTapStats = { lines: 0, suppressed: 0, malformed: 0 };
  private readonly room: string | undefined;
  private readonly bucket: TokenBucket;
  /** Suppressed since the last line written. */
  private skipped = 0;

  constructor(private readonly opts: DebugTapOptions) {
    const rate = opts.linesPerSecond ?? DEBUG_TAP_LINES_PER_SECOND;
    if (!Number.isInteger(rate) || rate < 1 || rate > 100_000) throw new UsageError(`debug tap rate ${rate} lines/s is not 1-100000`);
    this.room = 'room' in opts.target ? opts.target.room : undefined;
    this.bucket = new TokenBucket(rate, rate, performance.now());
  }

  /** Whether packets of this room are tapped. */
  matches(roomId: string): boolean {
    return this.room === undefined || this.room === roomId;
  }

  /**
   * A member's media packet reached the relay (call after forwarding it, with what became of
   * it). Parses the datagram only if its line is written.
   */
  packetIn(e: { roomId: string; sourceId: number; path: 'udp' | 'quic'; datagram: Uint8Array; fanout: number; dropped: number; refused?: string }): void {
    // A suppressed packet is not parsed at all: over the rate, a tap costs a token bucket.
    if (!this.matches(e.roomId) || !this.take()) return;
    const header = describeDatagram(e.datagram);
    if (header.kind === 'malformed') this.stats.malformed++;
    this.emit({
      dir: 'in',
      room: e.roomId.slice(0, ROOM_PREFIX_CHARS),
      src: e.sourceId,
      path: e.path,
      size: e.datagram.byteLength,
      ...header,
      fanout: e.fanout,
      ...(e.dropped > 0 ? { dropped: e.dropped } : {}),
      ...(e.refused !== undefined ? { refused: e.refused } : {}),
    });
  }

  /** One forwarded copy of a member's packet (after packetIn for it); `size`: the tagged datagram's bytes. */
  packetOut(e: { roomId: string; sourceId: number; to: number; path: 'udp' | 'quic'; size: number; datagram: Uint8Array }): void {
    if (!this.matches(e.roomId) || !this.take()) return;
    const header = describeDatagram(e.datagram);
    this.emit({
      dir: 'out',
      room: e.roomId.slice(0, ROOM_PREFIX_CHARS),
      src: e.sourceId,
      to: e.to,
      path: e.path,
      size: e.size,
      ...header,
    });
  }

  private take(): boolean {
    if (this.bucket.take(performance.now())) return true;
    this.skipped++;
    this.stats.suppressed++;
    return false;
  }

  private emit(fields: Record<string, unknown>): void {
    if (this.skipped > 0) {
      fields.suppressed = this.skipped;
      this.skipped = 0;
    }
    this.stats.lines++;
    try {
      this.opts.write(fields);
    } catch {
      // A log sink that fails must not take the relay's receive path down.
    }
  }
}

/** What a tap line says about one datagram: its kind, header fields and key epoch, or why it is malformed. */
export function describeDatagram(datagram: Uint8Array): TapHeaderFields {
  try {
    const kind = datagramKind(datagram);
    if (kind === 'trunk') {
      const entries = decodeTrunk(datagram);
      return {
        kind,
        packets: entries.length,
        entries: entries.slice(0, MAX_TRUNK_ENTRIES_LOGGED).map((entry) => describePacket(entry)),
      };
    }
    return describePacket(datagram);
  } catch (err) {
    if (err instanceof DecodeError) return { kind: 'malformed', error: `${err.format}: ${err.reason}` };
    return { kind: 'malformed', error: 'unreadable' };
  }
}

/** One media packet (full or mini header, then the sealed payload). Throws DecodeError. */
function describePacket(packet: Uint8Array): TapHeaderFields {
  if (packet.length > 0 && isMiniHeader(packet[0])) {
    if (packet.length < MINI_HEADER_BYTES) throw new DecodeError('mini-header', 'truncated', `${packet.length} bytes`);
    const first = (packet[OFFSET_MINI_SEQUENCE] << 8) | packet[OFFSET_MINI_SEQUENCE + 1];
    return {
      kind: 'mini',
      seqLow13: first & MINI_SEQUENCE_MASK,
      fecBlockLow8: packet[OFFSET_MINI_FEC_BLOCK],
      fecSymbol: packet[OFFSET_MINI_FEC_SYMBOL],
      repair: (first & MINI_REPAIR_FLAG) !== 0,
      ...epochAt(packet, MINI_HEADER_BYTES),
    };
  }
  const { header, headerLength } = decodeMediaHeader(packet);
  return { kind: 'full', ...fullFields(header), ...epochAt(packet, headerLength) };
}

function fullFields(h: MediaHeader): TapHeaderFields {
  return {
    seq: h.sequence,
    ts: h.timestamp,
    codec: h.codecId,
    tier: TIER_NAMES[h.tier] ?? h.tier,
    frameMs: (h.frameSamples * 1000) / 48_000,
    fec: { scheme: h.fec.schemeId, block: h.fec.block, symbol: h.fec.symbol, k: h.fec.k, r: h.fec.r, repair: h.fec.repair },
    ...(h.report ? { report: { fractionLost: h.report.fractionLost, rttMs: h.report.rttMs, jitterMs: h.report.jitterMs } } : {}),
  };
}

/** The sealed payload's key epoch (low 8 bits), if there are payload bytes after the header. */
function epochAt(packet: Uint8Array, headerLength: number): { epoch?: number } {
  return packet.length > headerLength + SEALED_OFFSET_EPOCH ? { epoch: packet[headerLength + SEALED_OFFSET_EPOCH] } : {};
}
