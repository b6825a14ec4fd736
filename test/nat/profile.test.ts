/**
 * The call's NAT profile from what gathering saw on the call's socket (core/nat/profile.ts):
 * mapping from the distinct server endpoints, allocation from the STUN answers in the order
 * sent (cut where that order is uncertain), recent ports, reflexive endpoints, consent; and
 * that whatever it builds passes the wire's validation (core/wire/nat-profile.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { buildNatProfile, type NatProfileInput, type StunTransaction } from '../../core/nat/profile.js';
import type { Endpoint } from '../../core/nat/stun.js';
import { natProfileProblem } from '../../core/wire/nat-profile.js';

const LOCAL_PORT = 50000;
const PUBLIC = '198.51.100.2';
const RELAY: Endpoint = { address: '203.0.113.1', port: 4433 };
/** An RFC 5780 server's four endpoints, and a third IP. */
const S1: Endpoint = { address: '203.0.113.1', port: 3478 };
const S2: Endpoint = { address: '203.0.113.1', port: 3479 };
const S3: Endpoint = { address: '203.0.113.2', port: 3478 };
const S4: Endpoint = { address: '203.0.113.2', port: 3479 };
const S5: Endpoint = { address: '192.0.2.9', port: 3478 };

const at = (port: number): Endpoint => ({ address: PUBLIC, port });
const answer = (server: Endpoint, port: number, t: number, attempts = 1): StunTransaction => ({ server, mapped: at(port), attempts, at: t });

function profile(o: Partial<NatProfileInput> & Pick<NatProfileInput, 'stun'>) {
  return buildNatProfile({ localPort: LOCAL_PORT, consent: true, now: 1000, ...o });
}

describe('NAT profile from the call socket', () => {
  it('endpoint-independent: three servers and the relay saw one mapped endpoint (fixed port)', () => {
    const { profile: p, notes } = profile({
      relay: { server: RELAY, mapped: at(40000), at: 900 },
      stun: [answer(S1, 40000, 950), answer(S3, 40000, 951), answer(S5, 40000, 960)],
    });
    assert.equal(p.mapping, 'endpoint-independent');
    assert.equal(p.allocation.kind, 'fixed');
    assert.equal(p.allocation.delta, undefined);
    assert.deepEqual(p.allocation.recentPorts, [40000]);
    assert.equal(p.allocation.observedAgoMs, 40);
    assert.deepEqual(p.reflexive, [at(40000)]);
    assert.equal(p.filtering, 'unknown');
    assert.equal(p.consent, true);
    assert.ok(notes.some((n) => /filtering unknown/.test(n)));
  });

  it('a NAT that keeps the local port: port-preserving', () => {
    const { profile: p } = profile({ stun: [answer(S1, LOCAL_PORT, 950), answer(S3, LOCAL_PORT, 951), answer(S5, LOCAL_PORT, 952)] });
    assert.equal(p.mapping, 'endpoint-independent');
    assert.equal(p.allocation.kind, 'port-preserving');
  });

  it('symmetric with sequential ports 40001, 40002, 40003: sequential, delta 1, address-and-port-dependent', () => {
    const { profile: p } = profile({
      relay: { server: RELAY, mapped: at(39990), at: 10 },
      stun: [answer(S1, 40001, 960), answer(S2, 40002, 950), answer(S3, 40003, 955)],
    });
    // S1 and S2 share an IP and saw different mappings: the port mattered.
    assert.equal(p.mapping, 'address-and-port-dependent');
    assert.equal(p.allocation.kind, 'sequential');
    assert.equal(p.allocation.delta, 1);
    // The relay's (oldest) mapping first, then the sequence in the order sent.
    assert.deepEqual(p.allocation.recentPorts, [39990, 40001, 40002, 40003]);
    // From the last answer (at 960), not the last in the list.
    assert.equal(p.allocation.observedAgoMs, 40);
    assert.deepEqual(p.reflexive, [at(40003), at(40002), at(40001), at(39990)]);
  });

  it('a negative step and a wraparound are still sequential', () => {
    const { profile: p } = profile({ stun: [answer(S1, 40010, 950), answer(S2, 40008, 951), answer(S3, 40006, 952), answer(S4, 40004, 953)] });
    assert.equal(p.allocation.kind, 'sequential');
    assert.equal(p.allocation.delta, -2);
  });

  it('random ports: random, no delta', () => {
    const { profile: p } = profile({ stun: [answer(S1, 51234, 950), answer(S2, 7311, 951), answer(S3, 33002, 952), answer(S4, 60999, 953)] });
    assert.equal(p.mapping, 'address-and-port-dependent');
    assert.equal(p.allocation.kind, 'random');
    assert.equal(p.allocation.delta, undefined);
    assert.deepEqual(p.allocation.recentPorts, [51234, 7311, 33002, 60999]);
  });

  it('too few servers: mapping and allocation unknown, what was seen still listed', () => {
    const { profile: p, notes } = profile({ relay: { server: RELAY, mapped: at(40000), at: 990 }, stun: [] });
    assert.equal(p.mapping, 'unknown');
    assert.equal(p.allocation.kind, 'unknown');
    assert.deepEqual(p.allocation.recentPorts, [40000]);
    assert.deepEqual(p.reflexive, [at(40000)]);
    assert.ok(notes.some((n) => /mapping unknown: 1 server endpoint/.test(n)), notes.join('\n'));
    const two = profile({ stun: [answer(S1, 40001, 950), answer(S3, 40002, 951)] }).profile;
    assert.notEqual(two.mapping, 'unknown', 'two distinct endpoints tell mapping apart');
    assert.equal(two.allocation.kind, 'unknown', 'two answers do not make an allocation');
  });

  it('nothing answered at all: an all-unknown profile with no ports and no age', () => {
    const { profile: p } = profile({ stun: [{ server: S1, attempts: 0, at: 1000 }] });
    assert.equal(p.mapping, 'unknown');
    assert.equal(p.allocation.kind, 'unknown');
    assert.deepEqual(p.allocation.recentPorts, []);
    assert.equal(p.allocation.observedAgoMs, undefined);
    assert.deepEqual(p.reflexive, []);
    assert.equal(natProfileProblem(p), undefined);
  });

  it('address-dependent: one IP, two ports saw one mapping; other IPs others', () => {
    const { profile: p } = profile({ stun: [answer(S1, 40001, 950), answer(S2, 40001, 951), answer(S3, 40002, 952), answer(S4, 40002, 953)] });
    assert.equal(p.mapping, 'address-dependent');
  });

  it('different mappings from servers on different IPs only: the harder behaviour, with a note saying why', () => {
    const { profile: p, notes } = profile({ relay: { server: RELAY, mapped: at(40000), at: 900 }, stun: [answer(S3, 40001, 950), answer(S5, 40002, 951)] });
    assert.equal(p.mapping, 'address-and-port-dependent');
    assert.ok(notes.some((n) => /look alike: the harder is assumed/.test(n)), notes.join('\n'));
  });

  it('a retransmitted request cuts the sequence there: its mapping may have been made later', () => {
    // S2's first request was lost: its retransmission got the newest port. In send order the
    // ports would read 40001, 40003, 40002: not sequential. Up to the cut they are in order.
    const stun = [answer(S1, 40001, 950), answer(S2, 40003, 960, 2), answer(S3, 40002, 951), answer(S4, 40004, 961, 2)];
    const { profile: p, notes } = profile({ stun });
    assert.equal(p.allocation.kind, 'unknown', 'one answer before the cut is not enough');
    assert.ok(notes.some((n) => /first 1 of 4 STUN answers: 203\.0\.113\.1:3479 answered only after 2 requests/.test(n)), notes.join('\n'));
    // The ports after the cut still count as seen, in the order answered.
    assert.deepEqual(p.allocation.recentPorts, [40001, 40002, 40003, 40004]);
    // A cut after three first-attempt answers keeps their order.
    const later = profile({ stun: [answer(S1, 40001, 950), answer(S2, 40002, 951), answer(S3, 40003, 952), { server: S4, attempts: 0, at: 1000 }] }).profile;
    assert.equal(later.allocation.kind, 'sequential');
    assert.equal(later.allocation.delta, 1);
  });

  it("a STUN server at the relay's own endpoint reuses the relay's mapping: out of the sequence, not a cut", () => {
    const relayStun = { server: RELAY, mapped: at(39990), attempts: 1, at: 950 };
    const { profile: p } = profile({ relay: { server: RELAY, mapped: at(39990), at: 900 }, stun: [answer(S1, 40001, 950), relayStun, answer(S2, 40002, 951), answer(S3, 40003, 952)] });
    assert.equal(p.allocation.kind, 'sequential');
    assert.equal(p.allocation.delta, 1);
    assert.deepEqual(p.allocation.recentPorts, [39990, 40001, 40002, 40003]);
  });

  it('IPv6 answers do not mix into an IPv4 profile', () => {
    const v6: StunTransaction = { server: { address: '2001:db8:f::1', port: 3478 }, mapped: { address: '2001:db8:a:2::2', port: LOCAL_PORT }, attempts: 1, at: 990 };
    const { profile: p, notes } = profile({ stun: [answer(S1, 40001, 950), v6, answer(S2, 40002, 951), answer(S3, 40003, 952)] });
    assert.equal(p.allocation.kind, 'sequential');
    assert.ok(p.reflexive.every((e) => e.address === PUBLIC));
    assert.ok(notes.some((n) => /1 IPv6 answer/.test(n)));
    // With only IPv6 answers, the profile is of IPv6 (no NAT: the port is kept).
    const only6 = profile({ stun: [v6, { ...v6, server: { address: '2001:db8:f::2', port: 3478 } }, { ...v6, server: { address: '2001:db8:f::2', port: 3479 } }] }).profile;
    assert.equal(only6.mapping, 'endpoint-independent');
    assert.equal(only6.allocation.kind, 'port-preserving');
  });

  it('consent is what the caller says', () => {
    assert.equal(profile({ stun: [], consent: false }).profile.consent, false);
  });

  it('whatever the observations, the profile is valid on the wire (bounds included)', () => {
    const endpoint = fc.record({ address: fc.oneof(fc.ipV4(), fc.ipV6()), port: fc.integer({ min: 1, max: 65535 }) }, { noNullPrototype: true });
    const transaction = fc.record(
      { server: endpoint, mapped: fc.option(endpoint, { nil: undefined }), attempts: fc.integer({ min: 0, max: 4 }), at: fc.integer({ min: 0, max: 1000 }) },
      { noNullPrototype: true, requiredKeys: ['server', 'attempts', 'at'] },
    );
    fc.assert(
      fc.property(fc.array(transaction, { maxLength: 40 }), fc.option(endpoint, { nil: undefined }), fc.boolean(), (stun, relayMapped, consent) => {
        const { profile: p } = buildNatProfile({ localPort: LOCAL_PORT, stun, consent, now: 1000, ...(relayMapped ? { relay: { server: RELAY, mapped: relayMapped, at: 0 } } : {}) });
        assert.equal(natProfileProblem(p), undefined, JSON.stringify(p));
      }),
    );
  });
});
