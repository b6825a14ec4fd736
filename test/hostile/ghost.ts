/**
 * The ghost of the relay review: a client that knows only a room's hash (all the relay sees,
 * so the relay operator itself can be one) joining a live call. Used by the admission tests
 * (test/call/admission.integration.test.ts) and the hostile suite.
 */
import { createPublicKey, diffieHellman, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { aeadOpen, MediaDecryptor, NONCE_BYTES } from '../../core/crypto/media-crypto.js';
import { deriveRoomKeys } from '../../core/crypto/room-name.js';
import { createAnnouncement, deriveWrapKey, parseWrappedKeyMessage, type MemberAnnouncement } from '../../core/crypto/sender-keys.js';
import { untagRoomDatagram } from '../../core/relay/rooms.js';
import { expectFingerprint, type HostPort } from '../../core/transport/quic.js';
import { MiniHeaderDecoder } from '../../core/wire/mini-header.js';

const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const x25519Key = (raw: Uint8Array): KeyObject => createPublicKey({ key: Buffer.concat([SPKI_X25519_PREFIX, raw]), format: 'der', type: 'spki' });
const fromB64 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'base64'));

/**
 * A ghost: someone who knows only the room's hash (what the relay sees: so the relay operator
 * itself), joining with an identity of its own, a copied alias and an admission key derived
 * from the hash (the best it has). It uses no admission check of its own: it takes every
 * wrapped key addressed to it and tries every media packet with every key it got.
 */
export class Ghost {
  readonly identity = generateIdentity();
  readonly #x25519 = generateKeyPairSync('x25519');
  readonly x25519PublicKey = new Uint8Array(this.#x25519.publicKey.export({ format: 'der', type: 'spki' }).subarray(12));
  readonly announcement: MemberAnnouncement;
  /** Sessions' X25519 keys by source id, from the announcements the relay handed on. */
  readonly #sessions = new Map<number, { fingerprint: string; x25519: Uint8Array }>();
  readonly #decryptors = new Map<number, MediaDecryptor>();
  readonly #splitters = new Map<number, MiniHeaderDecoder>();
  keysSeen = 0;
  keysForMe = 0;
  keysUnwrapped = 0;
  datagrams = 0;
  opened = 0;
  session: RelaySession | undefined;

  constructor(
    readonly roomId: string,
    alias: string,
  ) {
    // Not the name: the room id is all it knows.
    const notTheName = deriveRoomKeys(roomId).admissionKey;
    this.announcement = createAnnouncement(this.identity, roomId, notTheName, this.x25519PublicKey, { alias });
  }

  async join(target: { relay: HostPort; fingerprint: string }, alias: string): Promise<void> {
    const session = await RelaySession.open({ relay: target.relay, verify: expectFingerprint(target.fingerprint, 'relay') });
    this.session = session;
    session.onPush((msg) => {
      if (msg.type === 'room-update' && msg.joined !== undefined && msg.announcement) this.learn(msg.joined, msg.announcement);
      if (msg.type === 'relayed' && msg.payload.kind === 'announce') this.learn(msg.from, msg.payload.announcement);
      if (msg.type === 'relayed' && msg.payload.kind === 'key') this.onKey(msg.from, msg.payload.message);
    });
    session.datagrams.onDatagram((d) => this.onDatagram(d));
    const joined = await session.joinRoom(this.roomId, { alias, fingerprint: this.identity.fingerprint, announcement: { ...this.announcement } });
    for (const e of joined.announcements ?? []) this.learn(e.sourceId, e.announcement);
    await session.roomSignal({ kind: 'announce', announcement: this.announcement });
  }

  /** Media of its own: junk the members must drop (and count). */
  sendJunk(n: number): void {
    for (let i = 0; i < n; i++) this.session?.datagrams.send(new Uint8Array(randomBytes(80)));
  }

  private learn(sourceId: number, announcement: unknown): void {
    const a = announcement as MemberAnnouncement;
    if (typeof a?.x25519PublicKey === 'string') this.#sessions.set(sourceId, { fingerprint: a.fingerprint, x25519: fromB64(a.x25519PublicKey) });
  }

  private onKey(from: number, message: unknown): void {
    this.keysSeen++;
    const m = parseWrappedKeyMessage(message);
    if (m.to !== this.identity.fingerprint && m.toSession !== Buffer.from(this.x25519PublicKey).toString('base64')) return;
    this.keysForMe++;
    const sender = this.#sessions.get(from);
    if (!sender) return;
    const secret = new Uint8Array(diffieHellman({ privateKey: this.#x25519.privateKey, publicKey: x25519Key(sender.x25519) }));
    const context = { roomId: this.roomId, from: m.from, to: m.to, epoch: m.epoch, senderX25519PublicKey: sender.x25519, recipientX25519PublicKey: this.x25519PublicKey };
    const key = aeadOpen(deriveWrapKey(secret, context), new Uint8Array(NONCE_BYTES), [], fromB64(m.wrapped));
    if (!key) return;
    this.keysUnwrapped++;
    let decryptor = this.#decryptors.get(from);
    if (!decryptor) this.#decryptors.set(from, (decryptor = new MediaDecryptor({ roomId: this.roomId, senderFingerprint: m.from })));
    try {
      decryptor.install({ epoch: m.epoch, key });
    } catch {
      // an older epoch
    }
  }

  private onDatagram(d: Uint8Array): void {
    const tagged = untagRoomDatagram(d);
    if (!tagged) return;
    this.datagrams++;
    let splitter = this.#splitters.get(tagged.sourceId);
    if (!splitter) this.#splitters.set(tagged.sourceId, (splitter = new MiniHeaderDecoder()));
    try {
      const { headerLength } = splitter.splitPacket(tagged.datagram);
      const decryptor = this.#decryptors.get(tagged.sourceId);
      if (!decryptor) return;
      decryptor.open(tagged.datagram.subarray(0, headerLength), tagged.datagram.subarray(headerLength));
      this.opened++;
    } catch {
      // not opened
    }
  }

  async close(): Promise<void> {
    await this.session?.leave().catch(() => undefined);
    await this.session?.close().catch(() => undefined);
  }
}

