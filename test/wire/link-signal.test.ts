/**
 * Golden frames for the relay link messages (core/wire/signal.ts `link-*`; docs/federation.md):
 * canonical frames re-encode byte-exactly, and every bound is a typed DecodeError.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeSignal, encodeSignal, MAX_LINK_UPDATE_ENTRIES, type KnownSignalMessage } from '../../core/wire/signal.js';
import { assertDecodeError, toHex } from './helpers.js';

function frame(payload: string): Uint8Array {
  const bytes = new TextEncoder().encode(payload);
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
}

const FP = 'a1b2:'.repeat(15) + 'a1b2';
const NONCE = 'cd'.repeat(32);
const SIG = Buffer.alloc(64, 7).toString('base64');
const ROOM = 'ef'.repeat(16);

const GOLDEN: [string, KnownSignalMessage][] = [
  [
    `{"type":"link-hello","version":2,"fingerprint":"${FP}","certificate":"MIIB","sourcePrefix":41394}`,
    { type: 'link-hello', version: 2, fingerprint: FP, certificate: 'MIIB', sourcePrefix: 0xa1b2 },
  ],
  [
    `{"type":"link-challenge","version":2,"fingerprint":"${FP}","nonce":"${NONCE}","sourcePrefix":0}`,
    { type: 'link-challenge', version: 2, fingerprint: FP, nonce: NONCE, sourcePrefix: 0 },
  ],
  [`{"type":"link-auth","signature":"${SIG}"}`, { type: 'link-auth', signature: SIG }],
  [`{"type":"link-ready","fingerprint":"${FP}"}`, { type: 'link-ready', fingerprint: FP }],
  [
    `{"type":"link-update","entries":[{"room":"${ROOM}","mid":"0123456789abcdef","sid":2712797191,"hops":1,"via":false,"fingerprint":""},{"mid":"0123456789abcdef","gone":true,"final":true}]}`,
    { type: 'link-update', entries: [{ room: ROOM, mid: '0123456789abcdef', sid: 0xa1b2_0007, hops: 1, via: false, fingerprint: '' }, { mid: '0123456789abcdef', gone: true, final: true }] },
  ],
  [
    `{"type":"link-signal","room":"${ROOM}","from":"0123456789abcdef","to":"fedcba9876543210","hops":16,"payload":{"kind":"wrapped-key"}}`,
    { type: 'link-signal', room: ROOM, from: '0123456789abcdef', to: 'fedcba9876543210', hops: 16, payload: { kind: 'wrapped-key' } },
  ],
];

describe('relay link messages', () => {
  for (const [json, message] of GOLDEN) {
    it(`${message.type}: decodes, and re-encodes byte for byte`, () => {
      assert.deepEqual(decodeSignal(frame(json)), message);
      assert.equal(toHex(encodeSignal(message)), toHex(frame(json)));
    });
  }

  const bad: [string, string][] = [
    ['a link-hello with a short fingerprint', `{"type":"link-hello","version":1,"fingerprint":"a1b2","certificate":"MIIB","sourcePrefix":1}`],
    ['a link-hello with a certificate over 4096 characters', `{"type":"link-hello","version":1,"fingerprint":"${FP}","certificate":"${'A'.repeat(4100)}","sourcePrefix":1}`],
    ['a link-hello with a certificate that is not base64', `{"type":"link-hello","version":1,"fingerprint":"${FP}","certificate":"not base64!","sourcePrefix":1}`],
    ['a link-hello without a source-id prefix', `{"type":"link-hello","version":2,"fingerprint":"${FP}","certificate":"MIIB"}`],
    ['a link-hello with a source-id prefix over 16 bits', `{"type":"link-hello","version":2,"fingerprint":"${FP}","certificate":"MIIB","sourcePrefix":65536}`],
    ['a link-challenge with a short nonce', `{"type":"link-challenge","version":1,"fingerprint":"${FP}","nonce":"abcd","sourcePrefix":1}`],
    ['a link-auth with a short signature', `{"type":"link-auth","signature":"AAAA"}`],
    ['a link-update whose entries are not objects', `{"type":"link-update","entries":[1,2]}`],
    ['a link-update with too many entries', `{"type":"link-update","entries":[${Array(MAX_LINK_UPDATE_ENTRIES + 1).fill('{}').join(',')}]}`],
    ['a link-signal without hops', `{"type":"link-signal","room":"${ROOM}","from":"x","payload":{}}`],
    ['a link-signal whose payload is a list', `{"type":"link-signal","room":"${ROOM}","from":"x","hops":1,"payload":[]}`],
  ];
  for (const [name, json] of bad) {
    it(`refuses ${name} (bad-field)`, () => assertDecodeError(() => decodeSignal(frame(json)), 'bad-field', 'signal'));
  }
});
