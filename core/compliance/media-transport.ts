/**
 * The media-transport compliance suite: every MediaTransport (relay QUIC datagrams, the relay
 * UDP media path, a path switch, a direct path) must pass it.
 *
 *   import { describeMediaTransportCompliance } from 'wzp/compliance';
 *   describeMediaTransportCompliance('relay-udp', { connect: async () => ({ a, b, close }) });
 *
 * or run `mediaTransportComplianceChecks(harness)` under any test runner. The harness makes a
 * connected pair over a real path (e.g. two members of a room on a loopback relay), open in
 * both directions, for each check. The checks: what it says it is; datagrams delivered both
 * ways byte-exact; counters and liveness (last packet received) that move with the traffic;
 * the largest payload delivered, one byte more an error (MediaPayloadTooLargeError) that
 * leaves the transport working; a handler that throws breaks nothing; onDatagram replaces the
 * handler; the round trip is absent or plausible; close is idempotent, stops delivery and
 * turns sends into counted drops.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MediaTransport } from '../transport/media-transport.js';

export interface MediaTransportPair {
  /** Two ends: what `a` sends arrives at `b`, and the other way. Both open. */
  a: MediaTransport;
  b: MediaTransport;
  /**
   * What the other end receives for a datagram `from` sent (a relay room prefixes the
   * sender's source id); default: the same bytes.
   */
  deliveredAs?(from: 'a' | 'b', payload: Uint8Array): Uint8Array;
  /** Release everything the pair holds (sessions, sockets). */
  close(): Promise<void>;
}

export interface MediaTransportHarness {
  connect(): Promise<MediaTransportPair>;
}

export interface MediaTransportComplianceOptions {
  /**
   * Bytes the path between the two ends adds to a datagram (a relay room's source id: 2):
   * the largest payload delivered end to end is maxPayload() minus this. Default 0.
   */
  forwardingOverhead?: number;
  /** How long to wait for datagrams to arrive, ms (default 5000). */
  deliveryTimeoutMs?: number;
}

export interface MediaTransportComplianceCheck {
  name: string;
  run: () => Promise<void>;
}

const KINDS = new Set(['relay-quic', 'relay-udp', 'direct']);

/** What one end received, as hex strings, in arrival order. */
function collect(t: MediaTransport): string[] {
  const got: string[] = [];
  t.onDatagram((d) => got.push(Buffer.from(d).toString('hex')));
  return got;
}

function payload(tag: number, i: number, length = 24): Uint8Array {
  const p = new Uint8Array(length);
  for (let j = 0; j < length; j++) p[j] = (tag * 31 + i * 7 + j) & 0xff;
  p[0] = tag;
  if (length > 1) p[1] = i;
  return p;
}

function hex(d: Uint8Array): string {
  return Buffer.from(d).toString('hex');
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new assert.AssertionError({ message: `not within ${timeoutMs} ms: ${what}` });
    await new Promise((r) => setTimeout(r, 5));
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function mediaTransportComplianceChecks(harness: MediaTransportHarness, options: MediaTransportComplianceOptions = {}): MediaTransportComplianceCheck[] {
  const overhead = options.forwardingOverhead ?? 0;
  const timeout = options.deliveryTimeoutMs ?? 5000;

  /** Run `body` on a fresh pair, released whatever happens. */
  const withPair = async (body: (p: MediaTransportPair, expect: (from: 'a' | 'b', d: Uint8Array) => string) => Promise<void>): Promise<void> => {
    const pair = await harness.connect();
    const expect = (from: 'a' | 'b', d: Uint8Array): string => hex(pair.deliveredAs ? pair.deliveredAs(from, d) : d);
    try {
      await body(pair, expect);
    } finally {
      pair.a.close();
      pair.b.close();
      await pair.close();
    }
  };

  /** Send `count` datagrams from one end and wait until the other has them all. */
  const exchange = async (from: MediaTransport, to: string[], count: number, tag: number, name: 'a' | 'b', expect: (from: 'a' | 'b', d: Uint8Array) => string): Promise<string[]> => {
    const sent = Array.from({ length: count }, (_, i) => payload(tag, i));
    const wanted = sent.map((d) => expect(name, d));
    for (const d of sent) assert.equal(from.send(d), true, `${name}.send() took a datagram on an open path`);
    await until(() => wanted.every((w) => to.includes(w)), timeout, `${count} datagrams from ${name} arrive`);
    return wanted;
  };

  return [
    {
      name: 'says what it is: a known kind, a label, open once connected',
      run: () =>
        withPair(async ({ a, b }) => {
          for (const t of [a, b]) {
            assert.ok(KINDS.has(t.kind), `kind ${t.kind}`);
            assert.equal(typeof t.label, 'string');
            assert.ok(t.label.length > 0, 'a label');
            assert.equal(t.state, 'open');
            assert.ok(Number.isInteger(t.maxPayload()) && t.maxPayload() > overhead && t.maxPayload() <= 65_507, `maxPayload ${t.maxPayload()}`);
          }
        }),
    },
    {
      name: 'delivers datagrams both ways, byte-exact',
      run: () =>
        withPair(async ({ a, b }, expect) => {
          const atA = collect(a);
          const atB = collect(b);
          const fromA = await exchange(a, atB, 20, 0xa1, 'a', expect);
          const fromB = await exchange(b, atA, 20, 0xb2, 'b', expect);
          // Nothing went back to its own sender.
          assert.ok(!fromA.some((d) => atA.includes(d)) && !fromB.some((d) => atB.includes(d)), 'a datagram came back to its sender');
        }),
    },
    {
      name: 'counts what it sends and receives, and when it last received',
      run: () =>
        withPair(async ({ a, b }, expect) => {
          const before = a.stats();
          const beforeB = b.stats();
          assert.equal(b.lastReceivedAt() === undefined || b.lastReceivedAt()! <= performance.now(), true);
          const t0 = performance.now();
          const atB = collect(b);
          await exchange(a, atB, 10, 0xc3, 'a', expect);
          const s = a.stats();
          const r = b.stats();
          assert.ok(s.sent - before.sent >= 10, `sent ${s.sent - before.sent}`);
          assert.ok(s.bytesSent - before.bytesSent >= 10 * 24, `bytesSent ${s.bytesSent - before.bytesSent}`);
          assert.ok(r.received - beforeB.received >= 10, `received ${r.received - beforeB.received}`);
          assert.ok(r.bytesReceived - beforeB.bytesReceived >= 10 * 24, `bytesReceived ${r.bytesReceived - beforeB.bytesReceived}`);
          const last = b.lastReceivedAt();
          assert.ok(last !== undefined && last >= t0 && last <= performance.now(), `lastReceivedAt ${last} (sent from ${t0})`);
          for (const v of Object.values(s)) assert.ok(Number.isInteger(v) && v >= 0, JSON.stringify(s));
        }),
    },
    {
      name: 'the largest payload arrives; one byte more is a MediaPayloadTooLargeError that leaves it working',
      run: () =>
        withPair(async ({ a, b }, expect) => {
          const atB = collect(b);
          const max = a.maxPayload();
          const largest = payload(0xd4, 1, max - overhead);
          assert.equal(a.send(largest), true);
          await until(() => atB.includes(expect('a', largest)), timeout, `a ${largest.byteLength}-byte datagram arrives`);
          // Exactly maxPayload is taken (whatever the path beyond does with it).
          assert.doesNotThrow(() => a.send(payload(0xd4, 2, max)));
          const refusedBefore = a.stats().droppedTooLarge;
          assert.throws(
            () => a.send(new Uint8Array(max + 1)),
            (err: unknown) => (err as Error).name === 'MediaPayloadTooLargeError',
          );
          assert.throws(
            () => a.send(new Uint8Array(70_000)),
            (err: unknown) => (err as Error).name === 'MediaPayloadTooLargeError',
          );
          assert.equal(a.stats().droppedTooLarge - refusedBefore, 2);
          await exchange(a, atB, 3, 0xd5, 'a', expect);
        }),
    },
    {
      name: 'a handler that throws breaks nothing, and onDatagram replaces the handler',
      run: () =>
        withPair(async ({ a, b }, expect) => {
          let thrown = 0;
          b.onDatagram(() => {
            thrown++;
            throw new Error('handler bug');
          });
          assert.equal(a.send(payload(0xe6, 0)), true);
          await until(() => thrown > 0, timeout, 'the throwing handler was called');
          const atB = collect(b);
          const calls = thrown;
          await exchange(a, atB, 5, 0xe7, 'a', expect);
          assert.equal(thrown, calls, 'the replaced handler gets nothing more');
        }),
    },
    {
      name: 'its round trip is unknown or plausible',
      run: () =>
        withPair(async ({ a, b }, expect) => {
          await exchange(a, collect(b), 3, 0xf1, 'a', expect);
          await exchange(b, collect(a), 3, 0xf2, 'b', expect);
          for (const t of [a, b]) {
            const rtt = t.rttMs();
            assert.ok(rtt === undefined || (Number.isFinite(rtt) && rtt >= 0 && rtt < 10_000), `rttMs ${rtt}`);
          }
        }),
    },
    {
      name: 'close is idempotent, stops delivery, and makes sends counted drops',
      run: () =>
        withPair(async ({ a, b }, expect) => {
          const atB = collect(b);
          await exchange(a, atB, 2, 0x11, 'a', expect);
          b.close();
          b.close();
          assert.equal(b.state, 'closed');
          const delivered = atB.length;
          const receivedBefore = b.stats().received;
          for (let i = 0; i < 5; i++) a.send(payload(0x12, i));
          await pause(300);
          assert.equal(atB.length, delivered, 'nothing delivered after close');
          assert.equal(b.stats().received, receivedBefore, 'nothing counted as received after close');
          const dropped = b.stats().droppedClosed;
          assert.equal(b.send(payload(0x13, 0)), false);
          assert.equal(b.stats().droppedClosed, dropped + 1);
          assert.equal(b.maxPayload(), 0);
          // And the other end closes the same way.
          a.close();
          assert.equal(a.state, 'closed');
          assert.equal(a.send(payload(0x14, 0)), false);
        }),
    },
  ];
}

export function describeMediaTransportCompliance(name: string, harness: MediaTransportHarness, options: MediaTransportComplianceOptions = {}): void {
  describe(`media transport compliance: ${name}`, () => {
    for (const check of mediaTransportComplianceChecks(harness, options)) it(check.name, () => check.run());
  });
}
