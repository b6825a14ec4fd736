/**
 * RelayRotation (core/client/relay-rotation.ts): where a call goes next among its relays, and
 * the RELAY list and --relay-fingerprint parsing of the commands (src/services/relay-list.ts).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RelayRotation } from '../../core/client/relay-rotation.js';
import { FingerprintMismatchError, NetworkError } from '../../core/errors.js';
import { MAX_RELAYS, parseRelayList, relayFingerprints } from '../../src/services/relay-list.js';

const never = new AbortController().signal;
const FP_A = Array.from({ length: 16 }, () => 'aaaa').join(':');
const FP_B = Array.from({ length: 16 }, () => 'bbbb').join(':');

describe('relay rotation', () => {
  test('round robin from the relay in use, wrapping around; one relay is always itself', async () => {
    const tried: string[] = [];
    const r = new RelayRotation({ relays: ['a:1', 'b:2', 'c:3'], current: 1, open: async (relay) => (tried.push(relay), relay) });
    assert.equal(r.current, 'b:2');
    for (let i = 0; i < 4; i++) await r.next(never);
    assert.deepEqual(tried, ['c:3', 'a:1', 'b:2', 'c:3']);
    const one: string[] = [];
    const single = new RelayRotation({ relays: ['a:1'], open: async (relay) => (one.push(relay), relay) });
    await single.next(never);
    await single.next(never);
    assert.deepEqual(one, ['a:1', 'a:1']);
  });

  test('a failed relay is passed over by the next attempt', async () => {
    const tried: string[] = [];
    const r = new RelayRotation({
      relays: ['a:1', 'b:2', 'c:3'],
      open: async (relay) => {
        tried.push(relay);
        if (relay === 'b:2') throw new NetworkError('unreachable');
        return relay;
      },
    });
    await assert.rejects(r.next(never), { name: 'NetworkError' });
    assert.equal(await r.next(never), 'c:3');
    assert.equal(r.current, 'c:3');
    assert.deepEqual(tried, ['b:2', 'c:3']);
  });

  test('a relay with another certificate is never tried again; when all are, the mismatch is passed on', async () => {
    const tried: string[] = [];
    const bad = new Set(['b:2']);
    const r = new RelayRotation({
      relays: ['a:1', 'b:2'],
      open: async (relay) => {
        tried.push(relay);
        if (bad.has(relay)) throw new FingerprintMismatchError(`relay ${relay} presented certificate ffff`);
        return relay;
      },
    });
    // Another relay is left: a plain error, so the supervisor keeps trying.
    await assert.rejects(r.next(never), (err: Error) => err.name === 'Error' && /not trying b:2 again/.test(err.message));
    assert.equal(await r.next(never), 'a:1');
    assert.equal(await r.next(never), 'a:1', 'b:2 is skipped from now on');
    bad.add('a:1');
    await assert.rejects(r.next(never), { name: 'FingerprintMismatchError' });
    assert.deepEqual(tried, ['b:2', 'a:1', 'a:1', 'a:1']);
  });

  test('an empty list is a bug', () => {
    assert.throws(() => new RelayRotation({ relays: [], open: async () => 0 }), RangeError);
  });
});

describe('RELAY lists and --relay-fingerprint', () => {
  test('one relay or several, comma-separated (spaces trimmed, IPv6 in brackets)', () => {
    assert.deepEqual(parseRelayList('127.0.0.1:4433'), ['127.0.0.1:4433']);
    assert.deepEqual(parseRelayList('127.0.0.1:4433, [::1]:4434'), ['127.0.0.1:4433', '[::1]:4434']);
  });

  test('bad lists are usage errors naming the problem', () => {
    for (const [text, problem] of [
      ['127.0.0.1:4433,', /empty entry/],
      [',127.0.0.1:4433', /empty entry/],
      ['127.0.0.1:4433,127.0.0.1:4433', /twice/],
      ['127.0.0.1:4433,127.0.0.1:0', /cannot be dialled/],
      [Array.from({ length: MAX_RELAYS + 1 }, (_, i) => `127.0.0.1:${4000 + i}`).join(','), /at most 8 relays/],
    ] as const) {
      assert.throws(() => parseRelayList(text), (err: Error) => err.name === 'UsageError' && problem.test(err.message), text);
    }
  });

  test('--relay-fingerprint: one per relay in order, an empty entry trusts the pin', () => {
    assert.deepEqual(relayFingerprints(undefined, ['a:1', 'b:2']), [undefined, undefined]);
    assert.deepEqual(relayFingerprints(FP_A, ['a:1']), [FP_A]);
    assert.deepEqual(relayFingerprints(`${FP_A},${FP_B}`, ['a:1', 'b:2']), [FP_A, FP_B]);
    assert.deepEqual(relayFingerprints(`,${FP_B}`, ['a:1', 'b:2']), [undefined, FP_B]);
    assert.throws(() => relayFingerprints(FP_A, ['a:1', 'b:2']), { name: 'UsageError', message: /1 fingerprint\(s\) for 2 relays/ });
    assert.throws(() => relayFingerprints(`${FP_A},abcd`, ['a:1', 'b:2']), { name: 'UsageError' });
  });
});
