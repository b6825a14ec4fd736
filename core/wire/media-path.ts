/**
 * The UDP media path's packets (core/transport/udp-media.ts): plain UDP between a client and
 * the relay on the same 5-tuple as their QUIC connection.
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +---------------+-----------------------------------------------+
 * |     type      |                                               |  0
 * +---------------+             token (8 bytes)                   +
 * |                                                               |  4
 * +               +-----------------------------------------------+
 * |               |  datagram (media to the relay only) ...          8
 * +---------------+-----------------------------------------------+
 *
 * probe    client -> relay   0x21 | token (8)                 exactly 9 bytes
 * ack      relay -> client   0x22 | token (8)                 exactly 9 bytes
 * confirm  client -> relay   0x23 | token (8)                 exactly 9 bytes
 * media    client -> relay   0x24 | token (8) | datagram      datagram 1-MAX_DATAGRAM_BYTES
 * media    relay -> client   0x24 | datagram                  datagram 1-(MAX_DATAGRAM_BYTES + 4)
 * ```
 *
 * - type: 0x21-0x24. QUIC's fixed bit (0x40) and long-header bit (0x80) are clear and it is
 *   neither STUN (0x00/0x01) nor a connectivity check (0x30): see docs/wire-format.md for the
 *   first-byte map of the shared socket.
 * - token: 8 random bytes the relay hands a member in its `joined` answer.
 * - Media to a client carries no token (the relay's address is the proof of origin there;
 *   the datagram is authenticated end to end): a room's is the source-id tagged datagram
 *   (./room-source.ts), so it may be SOURCE_ID_BYTES longer than a media datagram.
 *
 * Which packets may arrive depends on the direction, so there are two decoders:
 * decodeToRelay (probe, confirm, media with token) and decodeToClient (ack, media).
 */

import { DecodeError, InternalError } from '../errors.js';
import { MAX_DATAGRAM_BYTES } from './datagram.js';
import { MAX_SOURCE_ID, MIN_SOURCE_ID, OFFSET_SOURCE_ID, SOURCE_ID_BYTES, writeSourceId } from './room-source.js';

const FORMAT = 'media-path';

export const MEDIA_PATH_PROBE = 0x21;
export const MEDIA_PATH_ACK = 0x22;
export const MEDIA_PATH_CONFIRM = 0x23;
export const MEDIA_PATH_MEDIA = 0x24;
/** The first bytes the media path owns on the shared socket (inclusive). */
export const MEDIA_PATH_FIRST_BYTES = [MEDIA_PATH_PROBE, MEDIA_PATH_MEDIA] as const;

export const OFFSET_MEDIA_PATH_TYPE = 0;
export const OFFSET_MEDIA_PATH_TOKEN = 1;
export const MEDIA_TOKEN_BYTES = 8;
/** Bytes in front of a media datagram sent to the relay: type and token. */
export const MEDIA_TO_RELAY_HEADER_BYTES = 1 + MEDIA_TOKEN_BYTES;
/** Bytes in front of a media datagram sent to a client: the type. */
export const MEDIA_TO_CLIENT_HEADER_BYTES = 1;
/** Probe, ack and confirm: type and token, nothing else. */
export const MEDIA_PATH_CONTROL_BYTES = 1 + MEDIA_TOKEN_BYTES;
/** The largest datagram a client sends on the path (the QUIC datagram limit, as in QUIC). */
export const MAX_MEDIA_TO_RELAY_DATAGRAM = MAX_DATAGRAM_BYTES;
/** The largest datagram the relay sends on the path (a room's carries the source id in front). */
export const MAX_MEDIA_TO_CLIENT_DATAGRAM = MAX_DATAGRAM_BYTES + SOURCE_ID_BYTES;
/** The largest media path packet in either direction. */
export const MAX_MEDIA_PATH_PACKET = Math.max(MEDIA_TO_RELAY_HEADER_BYTES + MAX_MEDIA_TO_RELAY_DATAGRAM, MEDIA_TO_CLIENT_HEADER_BYTES + MAX_MEDIA_TO_CLIENT_DATAGRAM);

/** What a client sends the relay. */
export type MediaPathToRelay =
  | { type: 'probe'; token: Uint8Array }
  | { type: 'confirm'; token: Uint8Array }
  | { type: 'media'; token: Uint8Array; datagram: Uint8Array };

/** What the relay sends a client. */
export type MediaPathToClient = { type: 'ack'; token: Uint8Array } | { type: 'media'; datagram: Uint8Array };

/** Whether a packet belongs to the media path, by its first byte (the body is not checked). */
export function isMediaPathPacket(data: Uint8Array): boolean {
  return data.length > 0 && data[0] >= MEDIA_PATH_PROBE && data[0] <= MEDIA_PATH_MEDIA;
}

function checkToken(token: Uint8Array): void {
  if (token.length !== MEDIA_TOKEN_BYTES) throw new InternalError(`media path token of ${token.length} bytes, must be ${MEDIA_TOKEN_BYTES}`);
}

function control(type: number, token: Uint8Array): Uint8Array {
  checkToken(token);
  const out = new Uint8Array(MEDIA_PATH_CONTROL_BYTES);
  out[OFFSET_MEDIA_PATH_TYPE] = type;
  out.set(token, OFFSET_MEDIA_PATH_TOKEN);
  return out;
}

export function encodeProbe(token: Uint8Array): Uint8Array {
  return control(MEDIA_PATH_PROBE, token);
}

export function encodeAck(token: Uint8Array): Uint8Array {
  return control(MEDIA_PATH_ACK, token);
}

export function encodeConfirm(token: Uint8Array): Uint8Array {
  return control(MEDIA_PATH_CONFIRM, token);
}

/**
 * The 9 bytes in front of every media datagram a client sends on the path (sent as the first
 * of a packet's parts, so the datagram is not copied).
 */
export function mediaToRelayHeader(token: Uint8Array): Uint8Array {
  return control(MEDIA_PATH_MEDIA, token);
}

/** The byte in front of every media datagram the relay sends on the path. */
export const MEDIA_TO_CLIENT_HEADER: Uint8Array = Uint8Array.of(MEDIA_PATH_MEDIA);

function checkDatagram(datagram: Uint8Array, max: number): void {
  if (datagram.length < 1 || datagram.length > max) throw new InternalError(`media path datagram of ${datagram.length} bytes, must be 1-${max}`);
}

/** One packet a client sends the relay, in one buffer. Throws InternalError for a bad token or datagram size. */
export function encodeToRelay(packet: MediaPathToRelay): Uint8Array {
  if (packet.type === 'probe') return encodeProbe(packet.token);
  if (packet.type === 'confirm') return encodeConfirm(packet.token);
  checkDatagram(packet.datagram, MAX_MEDIA_TO_RELAY_DATAGRAM);
  const out = new Uint8Array(MEDIA_TO_RELAY_HEADER_BYTES + packet.datagram.length);
  out.set(mediaToRelayHeader(packet.token), 0);
  out.set(packet.datagram, MEDIA_TO_RELAY_HEADER_BYTES);
  return out;
}

/** One packet the relay sends a client, in one buffer. Throws InternalError for a bad token or datagram size. */
export function encodeToClient(packet: MediaPathToClient): Uint8Array {
  if (packet.type === 'ack') return encodeAck(packet.token);
  checkDatagram(packet.datagram, MAX_MEDIA_TO_CLIENT_DATAGRAM);
  const out = new Uint8Array(MEDIA_TO_CLIENT_HEADER_BYTES + packet.datagram.length);
  out[OFFSET_MEDIA_PATH_TYPE] = MEDIA_PATH_MEDIA;
  out.set(packet.datagram, MEDIA_TO_CLIENT_HEADER_BYTES);
  return out;
}

/**
 * A room member's datagram as the relay fans it out, built once for every receiver: the
 * media path packet `0x24 | source id (u32) | datagram` (`packet`), and the source-id tagged
 * datagram (./room-source.ts) that QUIC receivers get (`tagged`, a view of `packet` past its
 * first byte). Same bytes as encodeToClient({type: 'media', datagram: encodeRoomDatagram(...)}),
 * without the second buffer, and from Node's buffer pool (Buffer.allocUnsafe, filled in full
 * here): a relay makes one per forwarded packet, and a typed array of its own per packet
 * (a separate backing store, tracked by the GC) was measurable there. Throws InternalError
 * for a source id outside 1 to 2^32-1 or a datagram that is empty or over MAX_DATAGRAM_BYTES.
 */
export function encodeRoomMediaToClient(sourceId: number, datagram: Uint8Array): { packet: Uint8Array; tagged: Uint8Array } {
  if (!Number.isInteger(sourceId) || sourceId < MIN_SOURCE_ID || sourceId > MAX_SOURCE_ID) {
    throw new InternalError(`room source id ${sourceId}, must be ${MIN_SOURCE_ID}-${MAX_SOURCE_ID}`);
  }
  checkDatagram(datagram, MAX_DATAGRAM_BYTES);
  const packet = Buffer.allocUnsafe(MEDIA_TO_CLIENT_HEADER_BYTES + SOURCE_ID_BYTES + datagram.length);
  packet[OFFSET_MEDIA_PATH_TYPE] = MEDIA_PATH_MEDIA;
  writeSourceId(packet, MEDIA_TO_CLIENT_HEADER_BYTES + OFFSET_SOURCE_ID, sourceId);
  packet.set(datagram, MEDIA_TO_CLIENT_HEADER_BYTES + SOURCE_ID_BYTES);
  return { packet, tagged: packet.subarray(MEDIA_TO_CLIENT_HEADER_BYTES) };
}

/**
 * The datagram of a media packet sent to the relay, checked as decodeToRelay checks it, or
 * undefined if `buf` is not one (another type, or a size decodeToRelay refuses: the caller
 * then decodes it for the reason). The relay's receive path for media: no decoded object,
 * only the datagram's view. The token is buf[OFFSET_MEDIA_PATH_TOKEN, +MEDIA_TOKEN_BYTES).
 */
export function mediaToRelayDatagram(buf: Buffer): Buffer | undefined {
  if (buf.length <= MEDIA_TO_RELAY_HEADER_BYTES || buf.length > MEDIA_TO_RELAY_HEADER_BYTES + MAX_MEDIA_TO_RELAY_DATAGRAM) return undefined;
  if (buf[OFFSET_MEDIA_PATH_TYPE] !== MEDIA_PATH_MEDIA) return undefined;
  return buf.subarray(MEDIA_TO_RELAY_HEADER_BYTES);
}

function requireControl(buf: Uint8Array, name: string): Uint8Array {
  if (buf.length < MEDIA_PATH_CONTROL_BYTES) throw new DecodeError(FORMAT, 'truncated', `${name} of ${buf.length} bytes, must be ${MEDIA_PATH_CONTROL_BYTES}`);
  if (buf.length > MEDIA_PATH_CONTROL_BYTES) throw new DecodeError(FORMAT, 'trailing-bytes', `${name} of ${buf.length} bytes, must be ${MEDIA_PATH_CONTROL_BYTES}`);
  return buf.subarray(OFFSET_MEDIA_PATH_TOKEN, OFFSET_MEDIA_PATH_TOKEN + MEDIA_TOKEN_BYTES);
}

function firstByte(buf: Uint8Array): number {
  if (buf.length === 0) throw new DecodeError(FORMAT, 'truncated', 'empty packet');
  return buf[OFFSET_MEDIA_PATH_TYPE];
}

/**
 * A packet the relay received on the path. Token and datagram are views into `buf`. Throws
 * DecodeError: 'truncated', 'trailing-bytes' (a control packet longer than 9 bytes),
 * 'too-large', 'bad-type' (an ack, which only the relay sends, or not a media path packet).
 */
export function decodeToRelay(buf: Uint8Array): MediaPathToRelay {
  const type = firstByte(buf);
  switch (type) {
    case MEDIA_PATH_PROBE:
      return { type: 'probe', token: requireControl(buf, 'probe') };
    case MEDIA_PATH_CONFIRM:
      return { type: 'confirm', token: requireControl(buf, 'confirm') };
    case MEDIA_PATH_MEDIA: {
      if (buf.length <= MEDIA_TO_RELAY_HEADER_BYTES) throw new DecodeError(FORMAT, 'truncated', `media of ${buf.length} bytes carries no datagram`);
      if (buf.length > MEDIA_TO_RELAY_HEADER_BYTES + MAX_MEDIA_TO_RELAY_DATAGRAM) {
        throw new DecodeError(FORMAT, 'too-large', `media of ${buf.length} bytes exceeds ${MEDIA_TO_RELAY_HEADER_BYTES + MAX_MEDIA_TO_RELAY_DATAGRAM}`);
      }
      return {
        type: 'media',
        token: buf.subarray(OFFSET_MEDIA_PATH_TOKEN, OFFSET_MEDIA_PATH_TOKEN + MEDIA_TOKEN_BYTES),
        datagram: buf.subarray(MEDIA_TO_RELAY_HEADER_BYTES),
      };
    }
    default:
      throw new DecodeError(FORMAT, 'bad-type', `type 0x${type.toString(16)} is not one a client sends`);
  }
}

/**
 * A packet a client received on the path. Token and datagram are views into `buf`. Throws
 * DecodeError: 'truncated', 'trailing-bytes', 'too-large', 'bad-type' (a probe or confirm,
 * which only clients send, or not a media path packet).
 */
export function decodeToClient(buf: Uint8Array): MediaPathToClient {
  const type = firstByte(buf);
  switch (type) {
    case MEDIA_PATH_ACK:
      return { type: 'ack', token: requireControl(buf, 'ack') };
    case MEDIA_PATH_MEDIA:
      if (buf.length <= MEDIA_TO_CLIENT_HEADER_BYTES) throw new DecodeError(FORMAT, 'truncated', 'media carries no datagram');
      if (buf.length > MEDIA_TO_CLIENT_HEADER_BYTES + MAX_MEDIA_TO_CLIENT_DATAGRAM) {
        throw new DecodeError(FORMAT, 'too-large', `media of ${buf.length} bytes exceeds ${MEDIA_TO_CLIENT_HEADER_BYTES + MAX_MEDIA_TO_CLIENT_DATAGRAM}`);
      }
      return { type: 'media', datagram: buf.subarray(MEDIA_TO_CLIENT_HEADER_BYTES) };
    default:
      throw new DecodeError(FORMAT, 'bad-type', `type 0x${type.toString(16)} is not one the relay sends`);
  }
}
