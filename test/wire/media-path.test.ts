import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_DATAGRAM_BYTES } from '../../core/wire/datagram.js';
import {
  MAX_MEDIA_TO_CLIENT_DATAGRAM,
  MEDIA_TO_CLIENT_HEADER,
  decodeToClient,
  decodeToRelay,
  encodeAck,
  encodeConfirm,
  encodeProbe,
  encodeToClient,
  encodeToRelay,
  isMediaPathPacket,
  mediaToRelayHeader,
  type MediaPathToClient,
  type MediaPathToRelay,
} from '../../core/wire/media-path.js';
import { assertDecodeError, atOffset, hex, toHex } from './helpers.js';

const TOKEN = '0102030405060708';

const TO_RELAY: [string, string, MediaPathToRelay][] = [
  ['a probe', `21 ${TOKEN}`, { type: 'probe', token: hex(TOKEN) }],
  ['a confirm', `23 ${TOKEN}`, { type: 'confirm', token: hex(TOKEN) }],
  ['media', `24 ${TOKEN} | 92 35 05 04 d5 aa`, { type: 'media', token: hex(TOKEN), datagram: hex('92 35 05 04 d5 aa') }],
  ['one byte of media', `24 ${TOKEN} | 14`, { type: 'media', token: hex(TOKEN), datagram: hex('14') }],
];

const TO_CLIENT: [string, string, MediaPathToClient][] = [
  ['an ack', `22 ${TOKEN}`, { type: 'ack', token: hex(TOKEN) }],
  ['room media (tagged)', '24 | 0007 | 92 35 05 04 d5', { type: 'media', datagram: hex('0007 92 35 05 04 d5') }],
  ['one byte of echo media', '24 | 14', { type: 'media', datagram: hex('14') }],
];

describe('media path: golden bytes', () => {
  for (const [name, bytes, packet] of TO_RELAY) {
    it(`encodes and decodes ${name} to the relay`, () => {
      const wire = hex(bytes);
      assert.equal(toHex(encodeToRelay(packet)), toHex(wire));
      assert.deepStrictEqual(decodeToRelay(atOffset(wire)), packet);
      assert.ok(isMediaPathPacket(wire));
    });
  }
  for (const [name, bytes, packet] of TO_CLIENT) {
    it(`encodes and decodes ${name} to a client`, () => {
      const wire = hex(bytes);
      assert.equal(toHex(encodeToClient(packet)), toHex(wire));
      assert.deepStrictEqual(decodeToClient(atOffset(wire)), packet);
      assert.ok(isMediaPathPacket(wire));
    });
  }

  it('has the one-purpose encoders and the media headers sent in front of a datagram', () => {
    assert.equal(toHex(encodeProbe(hex(TOKEN))), `21${TOKEN}`);
    assert.equal(toHex(encodeAck(hex(TOKEN))), `22${TOKEN}`);
    assert.equal(toHex(encodeConfirm(hex(TOKEN))), `23${TOKEN}`);
    assert.equal(toHex(mediaToRelayHeader(hex(TOKEN))), `24${TOKEN}`);
    assert.equal(toHex(MEDIA_TO_CLIENT_HEADER), '24');
  });

  it('decodes views into the packet, not copies', () => {
    const wire = hex(`24 ${TOKEN} 14 15`);
    const packet = decodeToRelay(wire);
    assert.equal(packet.token.buffer, wire.buffer);
    assert.equal(packet.type === 'media' && packet.datagram.buffer, wire.buffer);
  });

  const INVALID_TO_RELAY: [string, Uint8Array, string][] = [
    ['empty', new Uint8Array(0), 'truncated'],
    ['a probe without its last token byte', hex('21 01020304050607'), 'truncated'],
    ['a probe with a byte after the token', hex(`21 ${TOKEN} 00`), 'trailing-bytes'],
    ['a confirm without a token', hex('23'), 'truncated'],
    ['a confirm with a byte after the token', hex(`23 ${TOKEN} ff`), 'trailing-bytes'],
    ['media without a datagram', hex(`24 ${TOKEN}`), 'truncated'],
    ['media with a cut token', hex('24 0102'), 'truncated'],
    ['media over the datagram limit', Uint8Array.of(0x24, ...hex(TOKEN), ...new Uint8Array(MAX_DATAGRAM_BYTES + 1)), 'too-large'],
    ['an ack (only the relay sends those)', hex(`22 ${TOKEN}`), 'bad-type'],
    ['a STUN first byte', hex(`00 ${TOKEN}`), 'bad-type'],
    ['0x25', hex(`25 ${TOKEN}`), 'bad-type'],
  ];
  for (const [name, bytes, reason] of INVALID_TO_RELAY) {
    it(`to the relay: rejects ${name} with '${reason}'`, () => assertDecodeError(() => decodeToRelay(atOffset(bytes)), reason, 'media-path'));
  }

  const INVALID_TO_CLIENT: [string, Uint8Array, string][] = [
    ['empty', new Uint8Array(0), 'truncated'],
    ['an ack without its last token byte', hex('22 01020304050607'), 'truncated'],
    ['an ack with a byte after the token', hex(`22 ${TOKEN} 00`), 'trailing-bytes'],
    ['media without a datagram', hex('24'), 'truncated'],
    ['media over the tagged datagram limit', Uint8Array.of(0x24, ...new Uint8Array(MAX_MEDIA_TO_CLIENT_DATAGRAM + 1)), 'too-large'],
    ['a probe (only clients send those)', hex(`21 ${TOKEN}`), 'bad-type'],
    ['a confirm', hex(`23 ${TOKEN}`), 'bad-type'],
    ['a path check first byte', hex('30 11'), 'bad-type'],
  ];
  for (const [name, bytes, reason] of INVALID_TO_CLIENT) {
    it(`to a client: rejects ${name} with '${reason}'`, () => assertDecodeError(() => decodeToClient(atOffset(bytes)), reason, 'media-path'));
  }

  it('takes the largest datagrams in each direction', () => {
    const big = new Uint8Array(MAX_DATAGRAM_BYTES).fill(0x92);
    assert.deepStrictEqual(decodeToRelay(encodeToRelay({ type: 'media', token: hex(TOKEN), datagram: big })), { type: 'media', token: hex(TOKEN), datagram: big });
    const tagged = new Uint8Array(MAX_MEDIA_TO_CLIENT_DATAGRAM).fill(0x93);
    assert.deepStrictEqual(decodeToClient(encodeToClient({ type: 'media', datagram: tagged })), { type: 'media', datagram: tagged });
  });
});

describe('media path encoders: caller bugs are InternalErrors', () => {
  const cases: [string, () => unknown][] = [
    ['a 7-byte token', () => encodeProbe(new Uint8Array(7))],
    ['a 9-byte token', () => encodeAck(new Uint8Array(9))],
    ['an empty datagram to the relay', () => encodeToRelay({ type: 'media', token: hex(TOKEN), datagram: new Uint8Array(0) })],
    ['an oversized datagram to the relay', () => encodeToRelay({ type: 'media', token: hex(TOKEN), datagram: new Uint8Array(MAX_DATAGRAM_BYTES + 1) })],
    ['an empty datagram to a client', () => encodeToClient({ type: 'media', datagram: new Uint8Array(0) })],
    ['an oversized datagram to a client', () => encodeToClient({ type: 'media', datagram: new Uint8Array(MAX_MEDIA_TO_CLIENT_DATAGRAM + 1) })],
  ];
  for (const [name, run] of cases) {
    it(`refuses ${name}`, () => assert.throws(run, { name: 'InternalError' }));
  }
});

describe('isMediaPathPacket', () => {
  for (let b = 0; b < 256; b++) {
    const expected = b >= 0x21 && b <= 0x24;
    if (expected || b === 0x00 || b === 0x20 || b === 0x25 || b === 0x30 || b === 0x40 || b === 0xc0) {
      it(`${expected ? 'takes' : 'leaves'} first byte 0x${b.toString(16).padStart(2, '0')}`, () => assert.equal(isMediaPathPacket(Uint8Array.of(b, 0)), expected));
    }
  }
  it('leaves an empty packet', () => assert.equal(isMediaPathPacket(new Uint8Array(0)), false));
});
