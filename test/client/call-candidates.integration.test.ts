/**
 * The call's NAT profile as gatherForCall (core/client/call-candidates.ts) measures it on the
 * relay connection's own socket: an in-process relay on loopback, and STUN servers on other
 * loopback addresses that play a NAT (each new request, whichever server gets it, is answered
 * with the next external port, as a sequential symmetric NAT would map it). `relayHost` is
 * what decides the loopback shortcut, so a non-loopback name there makes the session gather
 * as it would behind a real NAT.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import { gatherForCall, natProfileToSend } from '../../core/client/call-candidates.js';
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { StunAttribute, StunMessageType, encodeAddressValue, encodeStunMessage, readStunMessage, type Endpoint } from '../../core/nat/stun.js';
import { Relay } from '../../core/relay/relay.js';
import { expectFingerprint } from '../../core/transport/quic.js';
import { natProfileProblem } from '../../core/wire/nat-profile.js';

const PUBLIC = '203.0.113.7';

/** Three STUN servers sharing one "NAT": the n-th request to arrive gets port first + n. */
interface NatStun {
  servers: Endpoint[];
  /** Server indexes in the order their requests arrived. */
  arrivals: number[];
  /** Drop the first request arriving at these servers (their client retransmits). */
  dropFirst: Set<number>;
  /** These servers answer with mapped port 0 (a hostile or broken server). */
  portZero: Set<number>;
  next: number;
  close(): Promise<void>;
}

async function natStun(first: number, ips: readonly string[], mapping: 'sequential' | 'fixed' = 'sequential'): Promise<NatStun> {
  const sockets: dgram.Socket[] = [];
  const state: NatStun = { servers: [], arrivals: [], dropFirst: new Set(), portZero: new Set(), next: first, close: async () => undefined };
  const seen = new Set<number>();
  for (const [index, ip] of ips.entries()) {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => s.bind(0, ip, () => resolve()));
    s.on('message', (msg, rinfo) => {
      state.arrivals.push(index);
      if (state.dropFirst.has(index) && !seen.has(index)) {
        seen.add(index);
        return;
      }
      const req = readStunMessage(msg);
      const port = state.portZero.has(index) ? 0 : mapping === 'fixed' ? first : state.next++;
      const mapped = { address: PUBLIC, port };
      const answer = encodeStunMessage(StunMessageType.BINDING_SUCCESS, req.transactionId, [{ type: StunAttribute.XOR_MAPPED_ADDRESS, value: encodeAddressValue(mapped, req.transactionId) }]);
      s.send(answer, rinfo.port, rinfo.address);
    });
    sockets.push(s);
    state.servers.push({ address: ip, port: s.address().port });
  }
  state.close = () => Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(() => undefined);
  return state;
}

let relay: Relay;
let fingerprint: string;
const sessions: RelaySession[] = [];
const stuns: NatStun[] = [];

before(async () => {
  const tls = await deriveTlsCertificate(generateIdentity().seed);
  relay = await Relay.start({ listen: { host: '127.0.0.1', port: 0 }, tls, fingerprint: tls.fingerprint, stun: false });
  fingerprint = tls.fingerprint;
});
after(async () => {
  await Promise.all(sessions.map((s) => s.close().catch(() => undefined)));
  await Promise.all(stuns.map((s) => s.close()));
  await relay.stop();
});

async function session(): Promise<RelaySession> {
  const s = await RelaySession.open({ relay: relay.address, verify: expectFingerprint(fingerprint, 'relay') });
  sessions.push(s);
  return s;
}

async function stunSet(first: number, mapping: 'sequential' | 'fixed' = 'sequential'): Promise<NatStun> {
  const n = await natStun(first, ['127.0.0.2', '127.0.0.3', '127.0.0.4'], mapping);
  stuns.push(n);
  return n;
}

const gatherOptions = (n: NatStun, extra: Partial<Parameters<typeof gatherForCall>[1]> = {}) => ({
  relayHost: '192.0.2.1',
  portMapping: false,
  stunServers: () => Promise.resolve(n.servers),
  signal: new AbortController().signal,
  ...extra,
});

describe('the NAT profile of a call, measured on its socket', () => {
  it('requests leave in the order listed, so a sequential NAT reads as sequential (delta 1), and the profile is valid to send', async () => {
    const n = await stunSet(40001);
    const g = await gatherForCall(await session(), gatherOptions(n));
    assert.deepEqual(n.arrivals, [0, 1, 2], 'one request each, in the order listed');
    const p = g.natProfile;
    assert.ok(p, 'a profile');
    assert.equal(p.allocation.kind, 'sequential', JSON.stringify(g.natNotes));
    assert.equal(p.allocation.delta, 1);
    // The relay's observation of the socket (loopback here) first, then the three mappings.
    assert.deepEqual(p.allocation.recentPorts.slice(1), [40001, 40002, 40003]);
    assert.deepEqual(p.reflexive.slice(0, 3), [40003, 40002, 40001].map((port) => ({ address: PUBLIC, port })));
    assert.equal(p.consent, true);
    assert.equal(p.filtering, 'unknown');
    // The relay and the STUN servers saw different mappings; all on different IPs.
    assert.equal(p.mapping, 'address-and-port-dependent');
    assert.ok(p.allocation.observedAgoMs !== undefined && p.allocation.observedAgoMs < 1000);
    assert.equal(natProfileProblem(p), undefined);
    assert.ok(g.natNotes?.some((n) => /allocation sequential/.test(n)));
    // The same answers are the call's srflx candidates.
    assert.deepEqual(
      g.wire.filter((c) => c.type === 'srflx' && c.address === PUBLIC).map((c) => c.port).sort(),
      [40001, 40002, 40003],
    );
  });

  it('an endpoint-independent NAT: every server saw one port (fixed)', async () => {
    const n = await stunSet(41000, 'fixed');
    const g = await gatherForCall(await session(), gatherOptions(n));
    assert.equal(g.natProfile?.allocation.kind, 'fixed');
    assert.deepEqual(g.natProfile?.allocation.recentPorts.slice(1), [41000]);
  });

  it('natProfileToSend ages the observations to the moment of sending', async () => {
    const n = await stunSet(42001);
    const g = await gatherForCall(await session(), gatherOptions(n));
    const measured = g.natProfile?.allocation.observedAgoMs;
    assert.ok(measured !== undefined && g.natMeasuredAt !== undefined);
    assert.equal(natProfileToSend(g, g.natMeasuredAt + 250)?.allocation.observedAgoMs, measured + 250);
    assert.deepEqual({ ...natProfileToSend(g, g.natMeasuredAt), allocation: {} }, { ...g.natProfile, allocation: {} });
  });

  it('a request answered only when sent again cuts the allocation sequence there (its mapping may be out of order)', async () => {
    const n = await stunSet(43001);
    n.dropFirst.add(1);
    const g = await gatherForCall(await session(), gatherOptions(n));
    // Arrivals: 0, 1 (dropped), 2, then 1 again after the client's RTO.
    assert.deepEqual(n.arrivals, [0, 1, 2, 1]);
    assert.equal(g.natProfile?.allocation.kind, 'unknown');
    assert.ok(g.natNotes?.some((x) => /first 1 of 3 STUN answers: 127\.0\.0\.3:\d+ answered only after 2 requests/.test(x)), JSON.stringify(g.natNotes));
    // All three answers still count as seen, the retransmitted one last.
    assert.deepEqual(g.natProfile?.allocation.recentPorts.slice(1), [43001, 43002, 43003]);
  });

  it('a server answering with port 0 counts as no answer: the profile stays sendable', async () => {
    const n = await stunSet(47001);
    n.portZero.add(2);
    const g = await gatherForCall(await session(), gatherOptions(n));
    const p = g.natProfile;
    assert.ok(p);
    assert.equal(natProfileProblem(p), undefined);
    assert.ok(!p.allocation.recentPorts.includes(0));
    assert.ok(!g.wire.some((c) => c.port === 0));
    assert.ok(g.natNotes?.some((x) => /127\.0\.0\.4:\d+ gave no usable answer/.test(x)), JSON.stringify(g.natNotes));
  });

  it('--no-hard-nat: the profile is still measured and sent, saying no', async () => {
    const n = await stunSet(44001);
    const g = await gatherForCall(await session(), gatherOptions(n, { hardNat: false }));
    assert.equal(g.natProfile?.consent, false);
    assert.equal(g.natProfile?.allocation.kind, 'sequential');
  });

  it('--relay-only: no profile (nothing about our addresses leaves the machine), nothing asked', async () => {
    const n = await stunSet(45001);
    const g = await gatherForCall(await session(), gatherOptions(n, { relayOnly: true }));
    assert.equal(g.natProfile, undefined);
    assert.equal(natProfileToSend(g), undefined);
    assert.deepEqual(n.arrivals, []);
  });

  it('a loopback relay: no profile (no NAT between the two ends, and nothing measured)', async () => {
    const n = await stunSet(46001);
    const g = await gatherForCall(await session(), gatherOptions(n, { relayHost: '127.0.0.1' }));
    assert.equal(g.natProfile, undefined);
    assert.deepEqual(n.arrivals, []);
  });
});
