import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import {
  COUNTER_BYTES,
  MediaDecryptor,
  MediaEncryptor,
  REPLAY_WINDOW_PACKETS,
  ReplayWindow,
  SEALED_OFFSET_CIPHERTEXT,
  SEALED_OFFSET_COUNTER,
  SEALED_OFFSET_EPOCH,
  SEALED_OVERHEAD,
  TAG_BYTES,
  aeadOpen,
  deriveMediaKeys,
  mediaNonce,
  type MediaDecryptorOptions,
  type MediaKeyContext,
} from '../../core/crypto/media-crypto.js';
import { mediaHeader } from './room-harness.js';

const CONTEXT: MediaKeyContext = { roomId: '6931b6ac8ccd58df781a4572645fb508', senderFingerprint: 'sender' };
const HEADER = mediaHeader(7);

function pair(options: MediaDecryptorOptions = {}): { encryptor: MediaEncryptor; decryptor: MediaDecryptor } {
  const encryptor = new MediaEncryptor(CONTEXT);
  const decryptor = new MediaDecryptor(CONTEXT, options);
  decryptor.install(encryptor.rotate());
  return { encryptor, decryptor };
}

function payload(bytes = 60): Uint8Array {
  return new Uint8Array(randomBytes(bytes));
}

function counterOf(sealed: Uint8Array): bigint {
  return Buffer.from(sealed).readBigUInt64BE(SEALED_OFFSET_COUNTER);
}

function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const copy = Uint8Array.from(bytes);
  copy[bit >>> 3] ^= 1 << (bit & 7);
  return copy;
}

test('seal/open round-trips any header and payload; layout is epoch, counter, ciphertext, tag', () => {
  const { encryptor, decryptor } = pair();
  let expectedCounter = 0n;
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 1200 }), (header, plaintext) => {
      const sealed = encryptor.seal(header, plaintext);
      assert.equal(sealed.length, plaintext.length + SEALED_OVERHEAD);
      assert.equal(sealed[SEALED_OFFSET_EPOCH], 0);
      assert.equal(counterOf(sealed), expectedCounter++);
      assert.deepEqual(decryptor.open(header, sealed), plaintext);
    }),
  );
});

test('flipping any bit of header, epoch, counter, ciphertext or tag is a DecryptError; the window is untouched', () => {
  const { encryptor, decryptor } = pair();
  const packets = Array.from({ length: 600 }, () => encryptor.seal(HEADER, payload()));
  for (const sealed of packets.slice(0, 200)) decryptor.open(HEADER, sealed); // so flipped counters may hit seen ones
  const fresh = packets.slice(200);
  const totalBits = (HEADER.length + SEALED_OVERHEAD + 60) * 8;
  fc.assert(
    fc.property(fc.nat({ max: fresh.length - 1 }), fc.nat({ max: totalBits - 1 }), (index, bit) => {
      const datagram = flipBit(Buffer.concat([HEADER, fresh[index]]), bit);
      const header = datagram.subarray(0, HEADER.length);
      const sealed = datagram.subarray(HEADER.length);
      assert.throws(() => decryptor.open(header, sealed), { name: 'DecryptError' });
    }),
    { numRuns: 2000 },
  );
  // The forgeries advanced nothing: every genuine packet still opens, once.
  for (const sealed of fresh) decryptor.open(HEADER, sealed);
});

test('each region is covered: a flip in header, counter, ciphertext and tag alike fails authentication', () => {
  const { encryptor, decryptor } = pair();
  const sealed = encryptor.seal(HEADER, payload());
  const regions = { header: 0, counter: SEALED_OFFSET_CIPHERTEXT - 1, ciphertext: SEALED_OFFSET_CIPHERTEXT, tag: sealed.length - TAG_BYTES };
  for (const [region, offset] of Object.entries(regions)) {
    const tamperedHeader = region === 'header' ? flipBit(HEADER, 0) : HEADER;
    const tamperedSealed = region === 'header' ? sealed : flipBit(sealed, offset * 8);
    assert.throws(() => decryptor.open(tamperedHeader, tamperedSealed), { name: 'DecryptError', reason: 'auth-failed' }, region);
  }
  assert.throws(() => decryptor.open(HEADER, flipBit(sealed, SEALED_OFFSET_EPOCH * 8)), { name: 'DecryptError', reason: 'unknown-epoch' });
  assert.deepEqual(decryptor.open(HEADER, sealed).length, 60);
});

test('truncated, extended, or re-split packets are DecryptErrors', () => {
  const { encryptor, decryptor } = pair();
  const sealed = encryptor.seal(HEADER, payload());
  for (let length = 0; length < sealed.length; length++) {
    assert.throws(() => decryptor.open(HEADER, sealed.subarray(0, length)), { name: 'DecryptError' }, `length ${length}`);
  }
  assert.throws(() => decryptor.open(HEADER, Buffer.concat([sealed, new Uint8Array(1)])), { name: 'DecryptError' });
  // Moving the header/payload boundary changes what is authenticated as header.
  const datagram = Buffer.concat([HEADER, sealed]);
  for (const split of [HEADER.length - 1, HEADER.length + 1]) {
    assert.throws(() => decryptor.open(datagram.subarray(0, split), datagram.subarray(split)), { name: 'DecryptError' });
  }
  assert.equal(decryptor.open(HEADER, sealed).length, 60);
});

test('arbitrary bytes only ever give DecryptError', () => {
  const { decryptor } = pair();
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ maxLength: 200 }), (header, sealed) => {
      sealed[SEALED_OFFSET_EPOCH] = 0; // reach the AEAD, not just the epoch lookup
      assert.throws(() => decryptor.open(header, sealed), { name: 'DecryptError' });
    }),
  );
  const beyondSafeCounter = Buffer.alloc(SEALED_OVERHEAD);
  beyondSafeCounter.writeBigUInt64BE(2n ** 53n, SEALED_OFFSET_COUNTER);
  assert.throws(() => decryptor.open(HEADER, beyondSafeCounter), { name: 'DecryptError', reason: 'bad-counter' });
});

test('a replayed packet is a ReplayError; out of order within the window is accepted once; too old is rejected', () => {
  const { encryptor, decryptor } = pair();
  const packets = Array.from({ length: REPLAY_WINDOW_PACKETS + 10 }, () => encryptor.seal(HEADER, payload()));
  decryptor.open(HEADER, packets[0]);
  assert.throws(() => decryptor.open(HEADER, packets[0]), { name: 'ReplayError', reason: 'duplicate' });
  // Out of order: 5 before 3 before 4, each once.
  for (const i of [5, 3, 4]) decryptor.open(HEADER, packets[i]);
  for (const i of [3, 4, 5]) assert.throws(() => decryptor.open(HEADER, packets[i]), { name: 'ReplayError', reason: 'duplicate' });
  // Jump to the last packet: packets exactly WINDOW-1 behind still open, WINDOW behind are too old.
  const last = packets.length - 1;
  decryptor.open(HEADER, packets[last]);
  decryptor.open(HEADER, packets[last - (REPLAY_WINDOW_PACKETS - 1)]);
  assert.throws(() => decryptor.open(HEADER, packets[last - REPLAY_WINDOW_PACKETS]), { name: 'ReplayError', reason: 'too-old' });
  assert.throws(() => decryptor.open(HEADER, packets[1]), { name: 'ReplayError', reason: 'too-old' });
});

test('ReplayWindow matches a reference model on arbitrary counter sequences', () => {
  assert.throws(() => new ReplayWindow().accept(2 ** 53), { name: 'InternalError' });
  const offset = fc.oneof(fc.nat({ max: 400 }), fc.nat({ max: 2 ** 40 }));
  fc.assert(
    fc.property(fc.array(offset, { maxLength: 300 }), fc.nat({ max: 2 ** 53 - 1 - 2 ** 40 }), (offsets, base) => {
      const window = new ReplayWindow();
      const accepted = new Set<number>();
      let highest = -1;
      for (const raw of offsets.map((c) => c + base)) {
        const fresh = !accepted.has(raw) && raw > highest - REPLAY_WINDOW_PACKETS;
        if (fresh) {
          window.accept(raw);
          accepted.add(raw);
          highest = Math.max(highest, raw);
        } else {
          assert.throws(() => window.accept(raw), { name: 'ReplayError' });
        }
      }
    }),
  );
});

test('nonces never repeat: many packets across rotations, reconstructed from the wire and checked to be the real nonces', () => {
  const encryptor = new MediaEncryptor(CONTEXT);
  const nonces = new Set<string>();
  const epochs: number[] = [];
  let packets = 0;
  for (let rotation = 0; rotation < 20; rotation++) {
    const senderKey = encryptor.rotate();
    epochs.push(senderKey.epoch);
    const keys = deriveMediaKeys(senderKey, CONTEXT);
    for (let i = 0; i < 500; i++) {
      const sealed = encryptor.seal(HEADER, payload(20));
      const counterBytes = sealed.subarray(SEALED_OFFSET_COUNTER, SEALED_OFFSET_COUNTER + COUNTER_BYTES);
      const nonce = mediaNonce(keys.nonceSalt, counterBytes);
      const associatedData = [HEADER, sealed.subarray(0, SEALED_OFFSET_CIPHERTEXT)];
      assert.ok(aeadOpen(keys.key, nonce, associatedData, sealed.subarray(SEALED_OFFSET_CIPHERTEXT)), 'the documented nonce opens the packet');
      nonces.add(Buffer.from(nonce).toString('hex'));
      packets++;
    }
  }
  assert.equal(nonces.size, packets);
  assert.deepEqual(epochs, Array.from({ length: 20 }, (_, i) => i));
});

test('keys are separated per sender, epoch and room: the same sender key opens nothing in another context', () => {
  const encryptor = new MediaEncryptor(CONTEXT);
  const senderKey = encryptor.rotate();
  const sealed = encryptor.seal(HEADER, payload());
  const contexts = [
    { ...CONTEXT, senderFingerprint: 'someone else' },
    { ...CONTEXT, roomId: 'another room' },
  ];
  for (const context of contexts) {
    const decryptor = new MediaDecryptor(context);
    decryptor.install({ epoch: senderKey.epoch, key: Uint8Array.from(senderKey.key) });
    assert.throws(() => decryptor.open(HEADER, sealed), { name: 'DecryptError', reason: 'auth-failed' });
  }
  const otherEpoch = new MediaDecryptor(CONTEXT);
  otherEpoch.install({ epoch: senderKey.epoch + 256, key: Uint8Array.from(senderKey.key) }); // same wire byte
  assert.throws(() => otherEpoch.open(HEADER, sealed), { name: 'DecryptError', reason: 'auth-failed' });
});

test('a key that reaches its packet limit refuses to seal until rotated', () => {
  const encryptor = new MediaEncryptor(CONTEXT, { maxPacketsPerKey: 3 });
  assert.equal(encryptor.packetsRemaining, 0);
  assert.throws(() => encryptor.seal(HEADER, payload()), { name: 'InternalError' });
  encryptor.rotate();
  for (let i = 0; i < 3; i++) encryptor.seal(HEADER, payload());
  assert.equal(encryptor.packetsRemaining, 0);
  assert.throws(() => encryptor.seal(HEADER, payload()), { name: 'InternalError', message: /exhausted/ });
  encryptor.rotate();
  assert.equal(encryptor.packetsRemaining, 3);
  assert.equal(counterOf(encryptor.seal(HEADER, payload())), 0n);
});

test('the previous epoch is accepted for the grace period after a rotation, then dropped', () => {
  let clock = 0;
  const { encryptor, decryptor } = pair({ graceMs: 1000, now: () => clock });
  const oldPackets = Array.from({ length: 3 }, () => encryptor.seal(HEADER, payload()));
  decryptor.install(encryptor.rotate());
  const newPacket = encryptor.seal(HEADER, payload());
  assert.equal(newPacket[SEALED_OFFSET_EPOCH], 1);
  decryptor.open(HEADER, newPacket);
  clock = 999;
  decryptor.open(HEADER, oldPackets[0]); // in flight across the rotation
  clock = 1000;
  assert.throws(() => decryptor.open(HEADER, oldPackets[1]), { name: 'DecryptError', reason: 'unknown-epoch' });
  clock = 0; // the key is gone for good, not merely out of time
  assert.throws(() => decryptor.open(HEADER, oldPackets[2]), { name: 'DecryptError', reason: 'unknown-epoch' });
});

test('only the previous epoch survives a rotation: two rotations drop the oldest at once', () => {
  const { encryptor, decryptor } = pair();
  const epoch0 = encryptor.seal(HEADER, payload());
  decryptor.install(encryptor.rotate());
  const epoch1 = encryptor.seal(HEADER, payload());
  decryptor.install(encryptor.rotate());
  decryptor.open(HEADER, epoch1);
  assert.throws(() => decryptor.open(HEADER, epoch0), { name: 'DecryptError', reason: 'unknown-epoch' });
});

test('a decryptor refuses to install an epoch that is not newer, even after clear()', () => {
  const encryptor = new MediaEncryptor(CONTEXT);
  const key0 = encryptor.rotate();
  const copy0 = { epoch: key0.epoch, key: Uint8Array.from(key0.key) };
  const decryptor = new MediaDecryptor(CONTEXT);
  decryptor.install(key0);
  const sealed = encryptor.seal(HEADER, payload());
  decryptor.open(HEADER, sealed);
  assert.throws(() => decryptor.install(copy0), { name: 'InternalError' });
  decryptor.clear();
  assert.throws(() => decryptor.open(HEADER, sealed), { name: 'DecryptError', reason: 'unknown-epoch' });
  assert.throws(() => decryptor.install(copy0), { name: 'InternalError' });
  assert.equal(decryptor.latestEpoch, 0);
});
