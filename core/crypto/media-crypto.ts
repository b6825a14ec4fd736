/**
 * Per-packet end-to-end media encryption (ChaCha20-Poly1305) under sender keys, with a
 * replay window. Key distribution lives in sender-keys.ts; the protocol is specified in
 * docs/e2e-encryption.md.
 *
 * Every sender holds a random 32-byte *sender key* per epoch. The AEAD key and a nonce salt
 * are derived from it with HKDF-SHA256, bound to the room, the sender's fingerprint and the
 * epoch, so no two senders or epochs ever share an AEAD key:
 *
 *   fields     = room id, sender fingerprint, epoch (u32)
 *   key        = HKDF-SHA256(ikm = sender key, salt = "", info = labelled("wzp-media-key-v1", fields), 32)
 *   nonce salt = HKDF-SHA256(ikm = sender key, salt = "", info = labelled("wzp-media-nonce-v1", fields), 12)
 *
 * A sealed payload follows the media header in the datagram:
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +---------------+-----------------------------------------------+
 * | epoch (low 8) |                                               |  0
 * +---------------+          packet counter (u64, BE)             +
 * |                                                               |  4
 * +               +-----------------------------------------------+
 * |               |         ciphertext (payload length) ...       |  8
 * +---------------+-----------------------------------------------+
 * |                 tag (16 bytes, Poly1305) ...                  |
 * +---------------------------------------------------------------+
 * ```
 *
 * - nonce = nonce salt XOR (0x00000000 || counter), 12 bytes. The counter starts at 0 for
 *   every new sender key and only ever increases, so a nonce never repeats under one key.
 * - associated data = the media header bytes exactly as sent, then the 9-byte epoch and
 *   counter prefix: a change to any bit of header, epoch, counter, ciphertext or tag fails
 *   authentication.
 * - Receivers authenticate first and consult the replay window afterwards, so every forged
 *   or damaged packet is a DecryptError and every authentic duplicate a ReplayError; the
 *   window only ever moves for authentic packets.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { ExitCode, InternalError, WzpError } from '../errors.js';

export const SENDER_KEY_BYTES = 32;
export const AEAD_KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const SEALED_OFFSET_EPOCH = 0;
export const SEALED_OFFSET_COUNTER = 1;
export const COUNTER_BYTES = 8;
export const SEALED_OFFSET_CIPHERTEXT = SEALED_OFFSET_COUNTER + COUNTER_BYTES;
/** Bytes a sealed payload adds to the plaintext: epoch, counter and tag. */
export const SEALED_OVERHEAD = SEALED_OFFSET_CIPHERTEXT + TAG_BYTES;
/** Epochs are u32; the wire carries their low 8 bits. */
export const MAX_EPOCH = 0xffff_ffff;
/** Default (and largest) number of packets sealed under one sender key: counters 0 to 2^53 - 1. */
export const MAX_PACKETS_PER_KEY = 2 ** 53;
/** Packets the replay window remembers behind the highest counter accepted. */
export const REPLAY_WINDOW_PACKETS = 128;
/** How long a receiver still accepts a sender's previous epoch after installing a newer one. */
export const PREVIOUS_EPOCH_GRACE_MS = 2000;
export const MEDIA_KEY_LABEL = 'wzp-media-key-v1';
export const MEDIA_NONCE_LABEL = 'wzp-media-nonce-v1';

const AEAD_ALGORITHM = 'chacha20-poly1305';
const EPOCH_WIRE_MASK = 0xff;
const NO_SALT = new Uint8Array(0);
const U16_MAX = 0xffff;
const U32_MAX = 0xffff_ffff;
const TWO_POW_32 = 2 ** 32;
/** Counters from 2^53 on have a high word of at least 2^21; this code never produces them. */
const MAX_COUNTER_HIGH_WORD = 2 ** 21 - 1;
const BITS_PER_WORD = 32;

// ---------------------------------------------------------------------------------------------
// Errors

export type DecryptFailure = 'truncated' | 'unknown-epoch' | 'bad-counter' | 'auth-failed';

/** A sealed packet that is not authentic (or cannot be, for lack of its key). Drop it. */
export class DecryptError extends WzpError {
  readonly reason: DecryptFailure;
  constructor(reason: DecryptFailure, message: string) {
    super(`media decryption failed: ${message}`, ExitCode.PROTOCOL);
    this.name = 'DecryptError';
    this.reason = reason;
  }
}

export type ReplayFailure = 'duplicate' | 'too-old';

/** An authentic packet whose counter was already accepted or has left the window. Drop it. */
export class ReplayError extends WzpError {
  readonly reason: ReplayFailure;
  constructor(reason: ReplayFailure, message: string) {
    super(`media packet replayed: ${message}`, ExitCode.PROTOCOL);
    this.name = 'ReplayError';
    this.reason = reason;
  }
}

// ---------------------------------------------------------------------------------------------
// Primitives shared with sender-keys.ts

export type LabelledField = string | Uint8Array | number;

/**
 * The unambiguous byte string for a label and its fields, used as HKDF info and as signed
 * transcripts: the label, then each field, each written as a u16 big-endian length followed
 * by its bytes (strings UTF-8, numbers as 4-byte big-endian u32).
 */
export function labelledFields(label: string, fields: readonly LabelledField[]): Uint8Array {
  const parts = [label, ...fields].map(fieldBytes);
  let length = 0;
  for (const part of parts) length += 2 + part.length;
  const out = new Uint8Array(length);
  const view = new DataView(out.buffer);
  let offset = 0;
  for (const part of parts) {
    view.setUint16(offset, part.length);
    out.set(part, offset + 2);
    offset += 2 + part.length;
  }
  return out;
}

function fieldBytes(field: LabelledField): Uint8Array {
  if (typeof field === 'number') {
    if (!Number.isInteger(field) || field < 0 || field > U32_MAX) throw new InternalError(`labelled field ${field} is not a u32`);
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, field);
    return bytes;
  }
  const bytes = typeof field === 'string' ? Buffer.from(field, 'utf8') : field;
  if (bytes.length > U16_MAX) throw new InternalError(`labelled field of ${bytes.length} bytes exceeds ${U16_MAX}`);
  return bytes;
}

/** HKDF-SHA256, with an empty salt unless one is given. */
export function hkdfSha256(ikm: Uint8Array, info: Uint8Array, length: number, salt: Uint8Array = NO_SALT): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', ikm, salt, info, length));
}

/** ChaCha20-Poly1305: ciphertext followed by the 16-byte tag. AD parts are authenticated in order, as one string. */
export function aeadSeal(key: Uint8Array, nonce: Uint8Array, associatedData: readonly Uint8Array[], plaintext: Uint8Array): Uint8Array {
  const out = new Uint8Array(plaintext.length + TAG_BYTES);
  sealInto(out, 0, key, nonce, associatedData, plaintext);
  return out;
}

/** Opens what aeadSeal produced; undefined when authentication fails (no plaintext escapes). */
export function aeadOpen(key: Uint8Array, nonce: Uint8Array, associatedData: readonly Uint8Array[], sealed: Uint8Array): Uint8Array | undefined {
  if (sealed.length < TAG_BYTES) return undefined;
  const ciphertextLength = sealed.length - TAG_BYTES;
  const decipher = createDecipheriv(AEAD_ALGORITHM, key, nonce, { authTagLength: TAG_BYTES });
  decipher.setAuthTag(sealed.subarray(ciphertextLength));
  for (const part of associatedData) decipher.setAAD(part, { plaintextLength: ciphertextLength });
  const plaintext = decipher.update(sealed.subarray(0, ciphertextLength));
  try {
    decipher.final();
  } catch {
    plaintext.fill(0);
    return undefined;
  }
  return new Uint8Array(plaintext.buffer, plaintext.byteOffset, plaintext.length);
}

function sealInto(
  out: Uint8Array,
  offset: number,
  key: Uint8Array,
  nonce: Uint8Array,
  associatedData: readonly Uint8Array[],
  plaintext: Uint8Array,
): void {
  const cipher = createCipheriv(AEAD_ALGORITHM, key, nonce, { authTagLength: TAG_BYTES });
  for (const part of associatedData) cipher.setAAD(part, { plaintextLength: plaintext.length });
  out.set(cipher.update(plaintext), offset);
  cipher.final();
  out.set(cipher.getAuthTag(), offset + plaintext.length);
}

// ---------------------------------------------------------------------------------------------
// Key derivation

/** Whose media a sender key protects. */
export interface MediaKeyContext {
  /** The room id (normally hashRoomName(name)). */
  roomId: string;
  /** The sender's identity fingerprint. */
  senderFingerprint: string;
}

/** One sender key: 32 random bytes, valid for one epoch of one sender. Secret. */
export interface SenderKey {
  epoch: number;
  key: Uint8Array;
}

/** The AEAD key and nonce salt derived from a sender key. Secret. */
export interface MediaKeys {
  key: Uint8Array;
  nonceSalt: Uint8Array;
}

export function deriveMediaKeys(senderKey: SenderKey, context: MediaKeyContext): MediaKeys {
  const fields = [context.roomId, context.senderFingerprint, senderKey.epoch];
  return {
    key: hkdfSha256(senderKey.key, labelledFields(MEDIA_KEY_LABEL, fields), AEAD_KEY_BYTES),
    nonceSalt: hkdfSha256(senderKey.key, labelledFields(MEDIA_NONCE_LABEL, fields), NONCE_BYTES),
  };
}

/** nonce salt XOR (4 zero bytes || the 8 counter bytes as on the wire). */
export function mediaNonce(nonceSalt: Uint8Array, counterBytes: Uint8Array): Uint8Array {
  const nonce = Uint8Array.from(nonceSalt);
  const start = NONCE_BYTES - COUNTER_BYTES;
  for (let i = 0; i < COUNTER_BYTES; i++) nonce[start + i] ^= counterBytes[i];
  return nonce;
}

function wipeKeys(keys: MediaKeys): void {
  keys.key.fill(0);
  keys.nonceSalt.fill(0);
}

function wireEpoch(epoch: number): number {
  return epoch & EPOCH_WIRE_MASK;
}

function checkSenderKey(senderKey: SenderKey): void {
  const { epoch, key } = senderKey;
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > MAX_EPOCH) throw new InternalError(`sender key epoch ${epoch} is not a u32`);
  if (key.length !== SENDER_KEY_BYTES) throw new InternalError(`a sender key is ${SENDER_KEY_BYTES} bytes, got ${key.length}`);
}

// ---------------------------------------------------------------------------------------------
// Sender

export interface MediaEncryptorOptions {
  /** Packets one sender key may seal before rotate() is required; default MAX_PACKETS_PER_KEY. */
  maxPacketsPerKey?: number;
}

/**
 * The local sender's side: generates its sender keys and seals packets under the current
 * one. One long-lived instance per sender, so code holding it always seals with the newest
 * key after a rotation.
 */
export class MediaEncryptor {
  readonly #context: MediaKeyContext;
  readonly #maxPacketsPerKey: number;
  #epoch: number | undefined;
  #keys: MediaKeys | undefined;
  #nextCounter = 0;

  constructor(context: MediaKeyContext, options: MediaEncryptorOptions = {}) {
    const max = options.maxPacketsPerKey ?? MAX_PACKETS_PER_KEY;
    if (!Number.isInteger(max) || max < 1 || max > MAX_PACKETS_PER_KEY) {
      throw new InternalError(`maxPacketsPerKey must be an integer 1-${MAX_PACKETS_PER_KEY}, got ${max}`);
    }
    this.#context = { ...context };
    this.#maxPacketsPerKey = max;
  }

  /** The current epoch; undefined before the first rotate(). */
  get epoch(): number | undefined {
    return this.#epoch;
  }

  /** Packets the current key may still seal; 0 before the first rotate() or once exhausted. */
  get packetsRemaining(): number {
    return this.#keys === undefined ? 0 : this.#maxPacketsPerKey - this.#nextCounter;
  }

  /**
   * Switches to a fresh random sender key in the next epoch (0 first) and returns it for
   * distribution. The caller wipes the returned key once it has wrapped it.
   */
  rotate(): SenderKey {
    const epoch = this.#epoch === undefined ? 0 : this.#epoch + 1;
    if (epoch > MAX_EPOCH) throw new InternalError('sender key epochs exhausted: start a new room session');
    const senderKey: SenderKey = { epoch, key: new Uint8Array(randomBytes(SENDER_KEY_BYTES)) };
    if (this.#keys !== undefined) wipeKeys(this.#keys);
    this.#keys = deriveMediaKeys(senderKey, this.#context);
    this.#epoch = epoch;
    this.#nextCounter = 0;
    return senderKey;
  }

  /**
   * Starts with a sender key the peer already has (epoch 0), instead of rotate()'s random
   * one: a 1:1 call's first keys, derived by both sides from the call secret
   * (core/crypto/call-keys.ts). Only before the first key, so a key is never sealed with twice
   * from counter 0. The caller wipes its copy.
   */
  start(senderKey: SenderKey): void {
    if (this.#keys !== undefined || this.#epoch !== undefined) throw new InternalError('start() is for the first sender key only');
    checkSenderKey(senderKey);
    if (senderKey.epoch !== 0) throw new InternalError(`a first sender key has epoch 0, got ${senderKey.epoch}`);
    this.#keys = deriveMediaKeys(senderKey, this.#context);
    this.#epoch = 0;
    this.#nextCounter = 0;
  }

  /** The sealed payload (epoch, counter, ciphertext, tag) to send after `header`. */
  seal(header: Uint8Array, payload: Uint8Array): Uint8Array {
    const keys = this.#keys;
    if (keys === undefined || this.#epoch === undefined) throw new InternalError('no sender key: call rotate() before sealing');
    if (this.#nextCounter >= this.#maxPacketsPerKey) {
      throw new InternalError(`sender key exhausted after ${this.#maxPacketsPerKey} packets: rotate() before sealing more`);
    }
    const counter = this.#nextCounter++;
    const sealed = new Uint8Array(SEALED_OVERHEAD + payload.length);
    writePrefix(sealed, this.#epoch, counter);
    const prefix = sealed.subarray(0, SEALED_OFFSET_CIPHERTEXT);
    const nonce = mediaNonce(keys.nonceSalt, sealed.subarray(SEALED_OFFSET_COUNTER, SEALED_OFFSET_CIPHERTEXT));
    sealInto(sealed, SEALED_OFFSET_CIPHERTEXT, keys.key, nonce, [header, prefix], payload);
    return sealed;
  }
}

function writePrefix(sealed: Uint8Array, epoch: number, counter: number): void {
  const view = new DataView(sealed.buffer, sealed.byteOffset, SEALED_OFFSET_CIPHERTEXT);
  view.setUint8(SEALED_OFFSET_EPOCH, wireEpoch(epoch));
  view.setUint32(SEALED_OFFSET_COUNTER, Math.floor(counter / TWO_POW_32));
  view.setUint32(SEALED_OFFSET_COUNTER + 4, counter >>> 0);
}

/** The counter of a sealed payload; undefined past 2^53 - 1, which no MediaEncryptor produces. */
function readCounter(sealed: Uint8Array): number | undefined {
  const view = new DataView(sealed.buffer, sealed.byteOffset, SEALED_OFFSET_CIPHERTEXT);
  const high = view.getUint32(SEALED_OFFSET_COUNTER);
  if (high > MAX_COUNTER_HIGH_WORD) return undefined;
  return high * TWO_POW_32 + view.getUint32(SEALED_OFFSET_COUNTER + 4);
}

// ---------------------------------------------------------------------------------------------
// Replay window

/**
 * Sliding-window replay protection (RFC 4303 section 3.4.3, bitmap as in RFC 6479): accepts
 * each counter at most once and rejects counters REPLAY_WINDOW_PACKETS or more behind the
 * highest accepted one. Feed it authenticated counters only.
 */
export class ReplayWindow {
  /** Bit (counter mod window) is set when that counter was accepted. */
  readonly #bits = new Uint32Array(REPLAY_WINDOW_PACKETS / BITS_PER_WORD);
  #highest = -1;

  /** Records `counter` (a safe non-negative integer); throws ReplayError if it may not be accepted. */
  accept(counter: number): void {
    if (!Number.isSafeInteger(counter) || counter < 0) throw new InternalError(`packet counter ${counter} is not a safe non-negative integer`);
    if (counter > this.#highest) {
      this.#advanceTo(counter);
    } else if (this.#highest - counter >= REPLAY_WINDOW_PACKETS) {
      throw new ReplayError('too-old', `counter ${counter} is ${REPLAY_WINDOW_PACKETS} or more behind ${this.#highest}`);
    } else if (this.#isSet(counter)) {
      throw new ReplayError('duplicate', `counter ${counter} was already received`);
    }
    this.#set(counter);
  }

  /** Moves the window's top to `counter`, forgetting the counters that slide out. */
  #advanceTo(counter: number): void {
    const distance = counter - this.#highest;
    if (distance >= REPLAY_WINDOW_PACKETS) {
      this.#bits.fill(0);
    } else {
      for (let step = 1; step <= distance; step++) this.#clear(this.#highest + step);
    }
    this.#highest = counter;
  }

  #isSet(counter: number): boolean {
    const bit = counter % REPLAY_WINDOW_PACKETS;
    return (this.#bits[bit >>> 5] & (1 << (bit & 31))) !== 0;
  }

  #set(counter: number): void {
    const bit = counter % REPLAY_WINDOW_PACKETS;
    this.#bits[bit >>> 5] |= 1 << (bit & 31);
  }

  #clear(counter: number): void {
    const bit = counter % REPLAY_WINDOW_PACKETS;
    this.#bits[bit >>> 5] &= ~(1 << (bit & 31));
  }
}

// ---------------------------------------------------------------------------------------------
// Receiver

export interface MediaDecryptorOptions {
  /** How long the previous epoch stays usable after a newer one is installed (ms). */
  graceMs?: number;
  /** Monotonic clock in ms; default performance.now(). */
  now?: () => number;
}

interface EpochState {
  epoch: number;
  keys: MediaKeys;
  window: ReplayWindow;
  /** Clock time after which this epoch is no longer accepted (Infinity while current). */
  retiresAt: number;
}

/**
 * One remote sender's side: opens that sender's packets with the keys it has distributed.
 * Holds the current epoch and, for `graceMs` after a rotation, the previous one, so packets
 * sealed just before the rotation still play. Each epoch has its own replay window.
 */
export class MediaDecryptor {
  readonly #context: MediaKeyContext;
  readonly #graceMs: number;
  readonly #now: () => number;
  #current: EpochState | undefined;
  #previous: EpochState | undefined;
  /** Survives clear(), so a wiped decryptor still refuses old epochs. */
  #latestEpoch: number | undefined;

  constructor(context: MediaKeyContext, options: MediaDecryptorOptions = {}) {
    this.#context = { ...context };
    this.#graceMs = options.graceMs ?? PREVIOUS_EPOCH_GRACE_MS;
    this.#now = options.now ?? (() => performance.now());
  }

  /** The newest epoch installed; undefined before the first. */
  get latestEpoch(): number | undefined {
    return this.#latestEpoch;
  }

  /**
   * Installs the sender's key for a newer epoch. The previous epoch retires after the grace
   * period; anything older is wiped. Epochs must increase (InternalError otherwise): an old
   * key installed again would reopen its replay window.
   */
  install(senderKey: SenderKey): void {
    checkSenderKey(senderKey);
    const { epoch } = senderKey;
    if (this.#latestEpoch !== undefined && epoch <= this.#latestEpoch) {
      throw new InternalError(`epoch ${epoch} is not newer than the installed epoch ${this.#latestEpoch}`);
    }
    this.#dropPrevious();
    if (this.#current !== undefined) {
      this.#current.retiresAt = this.#now() + this.#graceMs;
      this.#previous = this.#current;
    }
    this.#current = { epoch, keys: deriveMediaKeys(senderKey, this.#context), window: new ReplayWindow(), retiresAt: Infinity };
    this.#latestEpoch = epoch;
  }

  /**
   * The payload of a sealed packet received with `header` (the header bytes exactly as
   * received). Throws DecryptError for anything not authentic, ReplayError for an authentic
   * packet already received or older than the replay window; never anything else.
   */
  open(header: Uint8Array, sealed: Uint8Array): Uint8Array {
    if (sealed.length < SEALED_OVERHEAD) {
      throw new DecryptError('truncated', `${sealed.length} bytes is shorter than the ${SEALED_OVERHEAD}-byte minimum`);
    }
    const state = this.#stateFor(sealed[SEALED_OFFSET_EPOCH]);
    const counter = readCounter(sealed);
    if (counter === undefined) throw new DecryptError('bad-counter', 'packet counter beyond 2^53 - 1');
    const counterBytes = sealed.subarray(SEALED_OFFSET_COUNTER, SEALED_OFFSET_CIPHERTEXT);
    const prefix = sealed.subarray(0, SEALED_OFFSET_CIPHERTEXT);
    const nonce = mediaNonce(state.keys.nonceSalt, counterBytes);
    const payload = aeadOpen(state.keys.key, nonce, [header, prefix], sealed.subarray(SEALED_OFFSET_CIPHERTEXT));
    if (payload === undefined) throw new DecryptError('auth-failed', 'authentication tag mismatch');
    try {
      state.window.accept(counter);
    } catch (err) {
      payload.fill(0);
      throw err;
    }
    return payload;
  }

  /** Wipes every key; later packets fail with DecryptError 'unknown-epoch'. Only newer epochs may be installed after. */
  clear(): void {
    this.#dropPrevious();
    if (this.#current !== undefined) wipeKeys(this.#current.keys);
    this.#current = undefined;
  }

  #stateFor(epochByte: number): EpochState {
    if (this.#current !== undefined && wireEpoch(this.#current.epoch) === epochByte) return this.#current;
    if (this.#previous !== undefined && wireEpoch(this.#previous.epoch) === epochByte) {
      if (this.#now() < this.#previous.retiresAt) return this.#previous;
      this.#dropPrevious();
    }
    throw new DecryptError('unknown-epoch', `no key for epoch byte ${epochByte}`);
  }

  #dropPrevious(): void {
    if (this.#previous !== undefined) wipeKeys(this.#previous.keys);
    this.#previous = undefined;
  }
}
