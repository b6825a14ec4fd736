/**
 * A simulated room for the end-to-end encryption tests: members with real RoomKeyrings, and
 * a "relay" that only forwards (every message goes through JSON, as on the signalling
 * stream) and records everything it sees in a transcript. Also the relay's best attack: try
 * every 32-byte value in its transcript as a key.
 */
import { createPrivateKey, createPublicKey, diffieHellman, randomBytes, type KeyObject } from 'node:crypto';
import { generateIdentity, type Identity } from '../../core/crypto/identity.js';
import {
  MediaDecryptor,
  NONCE_BYTES,
  SEALED_OFFSET_CIPHERTEXT,
  SEALED_OFFSET_COUNTER,
  aeadOpen,
  mediaNonce,
  type MediaKeyContext,
} from '../../core/crypto/media-crypto.js';
import { deriveRoomKeys } from '../../core/crypto/room-name.js';
import {
  RoomKeyring,
  deriveWrapKey,
  parseWrappedKeyMessage,
  type RoomKeyringOptions,
  type WrappedKeyMessage,
} from '../../core/crypto/sender-keys.js';
import { MEDIA_HEADER_VERSION, QualityTier, encodeMediaHeader } from '../../core/wire/media-header.js';

export const PAYLOAD_BYTES = 60;

/** What passed through the relay. */
export interface RelayTranscript {
  /** Every signalling message, as the JSON text the relay forwarded. */
  signalling: string[];
  /** Every media packet: who sent it (the relay knows its connections), header and sealed payload. */
  packets: SealedPacket[];
}

export interface SealedPacket {
  /** The sender's session (X25519 public key, base64). */
  from: string;
  /** The sender's identity fingerprint. */
  fingerprint: string;
  epoch: number;
  header: Uint8Array;
  sealed: Uint8Array;
}

export class SimulatedRoom {
  readonly roomId: string;
  readonly #admissionKey: Uint8Array;
  readonly transcript: RelayTranscript = { signalling: [], packets: [] };
  /** Every payload any member sealed, to check none leaks. */
  readonly plaintexts: Uint8Array[] = [];
  readonly #members = new Map<string, RoomKeyring>();
  readonly #options: Omit<RoomKeyringOptions, 'admissionKey'>;
  #sequence = 0;

  constructor(options: Omit<RoomKeyringOptions, 'admissionKey'> = {}) {
    this.#options = options;
    ({ roomId: this.roomId, admissionKey: this.#admissionKey } = deriveRoomKeys('e2e test room'));
  }

  /** Members are named by session (RoomKeyring.session): one identity may join twice. */
  member(session: string): RoomKeyring {
    const keyring = this.#members.get(session);
    if (keyring === undefined) throw new Error(`no member ${session}`);
    return keyring;
  }

  /** A new member joins: announcements are exchanged, then everyone rotates. */
  join(identity: Identity = generateIdentity()): RoomKeyring {
    const newcomer = new RoomKeyring(identity, this.roomId, { ...this.#options, admissionKey: this.#admissionKey });
    const announcement = this.#relay(newcomer.localAnnouncement());
    for (const member of this.#members.values()) {
      member.addMember(JSON.parse(announcement));
      newcomer.addMember(JSON.parse(this.#relay(member.localAnnouncement())));
    }
    this.#members.set(newcomer.session, newcomer);
    this.rotateAll();
    return newcomer;
  }

  /** A member leaves: the relay tells the others, who rotate. Returns its (still live) keyring. */
  leave(session: string): RoomKeyring {
    const leaver = this.member(session);
    this.#members.delete(session);
    for (const member of this.#members.values()) member.removeMember(session);
    this.rotateAll();
    return leaver;
  }

  /** Every member that needs to rotates and its wrapped keys are delivered. */
  rotateAll(): WrappedKeyMessage[] {
    const sent: WrappedKeyMessage[] = [];
    for (const member of this.#members.values()) {
      if (!member.needsRotation) continue;
      for (const message of member.rotate()) {
        sent.push(message);
        this.member(message.toSession).receiveWrappedKey(JSON.parse(this.#relay(message)));
      }
    }
    return sent;
  }

  /** `from` seals a random payload; the packet is recorded as the relay would see it. */
  send(from: string): { packet: SealedPacket; payload: Uint8Array } {
    const sender = this.member(from);
    const encryptor = sender.encryptor();
    const payload = new Uint8Array(randomBytes(PAYLOAD_BYTES));
    const header = mediaHeader(this.#sequence++);
    const sealed = encryptor.seal(header, payload);
    const packet = { from, fingerprint: sender.fingerprint, epoch: encryptor.epoch as number, header, sealed };
    this.plaintexts.push(payload);
    this.transcript.packets.push(packet);
    return { packet, payload };
  }

  /** `to` opens a packet with its decryptor for the packet's sender (throws as the decryptor does). */
  open(to: RoomKeyring, packet: SealedPacket): Uint8Array {
    const decryptor = to.decryptorFor(packet.from);
    if (decryptor === undefined) throw new Error(`${to.fingerprint} has no decryptor for ${packet.from}`);
    return decryptor.open(packet.header, packet.sealed);
  }

  #relay(message: object): string {
    const json = JSON.stringify(message);
    this.transcript.signalling.push(json);
    return json;
  }
}

export function mediaHeader(sequence: number): Uint8Array {
  return encodeMediaHeader({
    version: MEDIA_HEADER_VERSION,
    codecId: 1,
    tier: QualityTier.GOOD,
    sequence: sequence & 0xffff,
    timestamp: (sequence * 960) >>> 0,
    frameSamples: 960,
    fec: { schemeId: 0, block: 0, symbol: 0, repair: false, k: 0, r: 0 },
    extensions: [],
  });
}

// ---------------------------------------------------------------------------------------------
// The relay's view

/** Every binary value in the transcript: the decoded base64 fields and the raw packets. */
export function transcriptBytes(transcript: RelayTranscript): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const json of transcript.signalling) {
    for (const value of Object.values(JSON.parse(json) as Record<string, unknown>)) {
      if (typeof value === 'string' && /^[A-Za-z0-9+/]+=*$/.test(value)) out.push(new Uint8Array(Buffer.from(value, 'base64')));
    }
  }
  for (const packet of transcript.packets) out.push(Buffer.concat([packet.header, packet.sealed]));
  return out;
}

/** Every distinct 32-byte window of the transcript's binary values. */
export function candidateKeys(transcript: RelayTranscript): Uint8Array[] {
  const seen = new Map<string, Uint8Array>();
  for (const bytes of transcriptBytes(transcript)) {
    for (let i = 0; i + 32 <= bytes.length; i++) {
      const window = bytes.subarray(i, i + 32);
      seen.set(Buffer.from(window).toString('hex'), Uint8Array.from(window));
    }
  }
  return [...seen.values()];
}

/** True if `needle` occurs anywhere in `haystack`. */
export function containsBytes(haystack: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(haystack.buffer, haystack.byteOffset, haystack.length).indexOf(Buffer.from(needle)) !== -1;
}

const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const WRAP_NONCE = new Uint8Array(NONCE_BYTES);
const ZERO_SALT = new Uint8Array(NONCE_BYTES);

export interface AttackResult {
  /** Packets some candidate opened. */
  packetsOpened: number;
  /** Wrapped keys some candidate unwrapped. */
  keysUnwrapped: number;
  /** Candidate values tried. */
  candidates: number;
}

/**
 * Everything a relay can do with what it holds: each candidate 32-byte value is tried as a
 * sender key of every (sender, epoch) seen (through the real key derivation) and directly as
 * the AEAD key (nonce from the counter alone); as an X25519 private key against every
 * announced X25519 key (then through the real wrap-key derivation) and directly as a wrap key.
 */
export function relayAttack(transcript: RelayTranscript, roomId: string, candidates = candidateKeys(transcript)): AttackResult {
  return {
    packetsOpened: attackPackets(transcript, roomId, candidates),
    keysUnwrapped: attackWrappedKeys(transcript, roomId, candidates),
    candidates: candidates.length,
  };
}

function attackPackets(transcript: RelayTranscript, roomId: string, candidates: Uint8Array[]): number {
  const streams = new Map<string, SealedPacket[]>();
  for (const packet of transcript.packets) {
    const id = `${packet.from}/${packet.epoch}`;
    streams.set(id, [...(streams.get(id) ?? []), packet]);
  }
  const opened = new Set<SealedPacket>();
  for (const packets of streams.values()) {
    const context: MediaKeyContext = { roomId, senderFingerprint: packets[0].fingerprint };
    for (const candidate of candidates) {
      const decryptor = new MediaDecryptor(context);
      decryptor.install({ epoch: packets[0].epoch, key: candidate });
      for (const packet of packets) {
        if (opensAsSenderKey(decryptor, packet) || opensAsAeadKey(candidate, packet)) opened.add(packet);
      }
    }
  }
  return opened.size;
}

function opensAsSenderKey(decryptor: MediaDecryptor, packet: SealedPacket): boolean {
  try {
    decryptor.open(packet.header, packet.sealed);
    return true;
  } catch {
    return false;
  }
}

function opensAsAeadKey(key: Uint8Array, packet: SealedPacket): boolean {
  const nonce = mediaNonce(ZERO_SALT, packet.sealed.subarray(SEALED_OFFSET_COUNTER, SEALED_OFFSET_CIPHERTEXT));
  const associatedData = [packet.header, packet.sealed.subarray(0, SEALED_OFFSET_CIPHERTEXT)];
  return aeadOpen(key, nonce, associatedData, packet.sealed.subarray(SEALED_OFFSET_CIPHERTEXT)) !== undefined;
}

function attackWrappedKeys(transcript: RelayTranscript, roomId: string, candidates: Uint8Array[]): number {
  const messages = transcript.signalling.map((json) => JSON.parse(json) as Record<string, unknown>);
  // Members by session: the X25519 keys announced (wrapped keys name them too).
  const x25519ByMember = new Map<string, Uint8Array>();
  for (const message of messages) {
    if (typeof message.x25519PublicKey === 'string') {
      x25519ByMember.set(message.x25519PublicKey, new Uint8Array(Buffer.from(message.x25519PublicKey, 'base64')));
    }
  }
  const publicKeys = new Map([...x25519ByMember].map(([member, raw]) => [member, x25519PublicKeyObject(raw)]));
  const wraps = messages.filter((message) => typeof message.wrapped === 'string').map((message) => parseWrappedKeyMessage(message));
  const unwrapped = new Set<WrappedKeyMessage>();
  for (const candidate of candidates) {
    const secrets = sharedSecretsFor(candidate, publicKeys);
    for (const wrap of wraps) {
      const senderX25519PublicKey = x25519ByMember.get(wrap.fromSession);
      const recipientX25519PublicKey = x25519ByMember.get(wrap.toSession);
      if (senderX25519PublicKey === undefined || recipientX25519PublicKey === undefined) continue;
      const context = { roomId, from: wrap.from, to: wrap.to, epoch: wrap.epoch, senderX25519PublicKey, recipientX25519PublicKey };
      const wrapped = new Uint8Array(Buffer.from(wrap.wrapped, 'base64'));
      const derived = [wrap.fromSession, wrap.toSession].flatMap((member) => secrets.get(member) ?? []).map((secret) => deriveWrapKey(secret, context));
      if ([candidate, ...derived].some((key) => aeadOpen(key, WRAP_NONCE, [], wrapped) !== undefined)) unwrapped.add(wrap);
    }
  }
  return unwrapped.size;
}

function x25519PublicKeyObject(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_X25519_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** X25519(candidate as a private key, each member's announced key), where defined. */
function sharedSecretsFor(candidate: Uint8Array, publicKeys: Map<string, KeyObject>): Map<string, Uint8Array> {
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, candidate]), format: 'der', type: 'pkcs8' });
  const secrets = new Map<string, Uint8Array>();
  for (const [member, publicKey] of publicKeys) {
    try {
      secrets.set(member, new Uint8Array(diffieHellman({ privateKey, publicKey })));
    } catch {
      // low-order result: no secret
    }
  }
  return secrets;
}
