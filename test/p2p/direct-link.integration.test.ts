/**
 * DirectLink over real UDP sockets on 127.0.0.1 (real timers, bounded waits; nothing is ever
 * sent anywhere but loopback): two links, caller and callee, each on its own node:dgram socket
 * behind a Demux, find each other with connectivity checks and carry direct media both ways;
 * a hostile relay hint pointing at an attacker socket is tried and never selected; direct
 * media with the wrong tag or from an unvalidated address is dropped and counted; a silent
 * peer makes the path stale and its answers bring it back; the direct transport passes the
 * shared MediaTransport compliance suite; primeTowards sends what it should.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { type Socket, createSocket } from 'node:dgram';
import { describe, it } from 'node:test';
import { describeMediaTransportCompliance, type MediaTransportPair } from '../../core/compliance/media-transport.js';
import { deriveCallKeys, directMediaTags } from '../../core/crypto/call-keys.js';
import { type Candidate, candidatePriority } from '../../core/p2p/candidates.js';
import { CHECK_DEFAULTS } from '../../core/p2p/checks.js';
import { DirectLink, type DirectLinkEvent, type DirectLinkOptions, MAX_CANDIDATE_UPDATES, primeTowards } from '../../core/p2p/direct-link.js';
import { DIRECT_MAX_PAYLOAD } from '../../core/p2p/direct-path.js';
import { DEFAULT_TTL, Demux } from '../../core/transport/demux.js';
import { encodeDirectMedia } from '../../core/wire/direct-media.js';
import { decodePathCheck, encodePathCheck } from '../../core/wire/path-check.js';
import { SOURCE_ID_BYTES, writeSourceId } from '../../core/wire/room-source.js';

const LOOPBACK = '127.0.0.1';

async function loopbackSocket(): Promise<Socket> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, LOOPBACK, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  return socket;
}

function closeSocket(socket: Socket): void {
  try {
    socket.close();
  } catch {
    // already closed
  }
}

function hostCandidate(port: number): Candidate {
  return { type: 'host', address: LOOPBACK, port, family: 'IPv4', priority: candidatePriority('host', 'IPv4') };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolve once `cond()` holds; fail after `timeoutMs` with `what` (and `detail()`, evaluated then). */
async function until(cond: () => boolean, timeoutMs: number, what: string, detail: () => unknown = () => ''): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) assert.fail(`not within ${timeoutMs} ms: ${what} ${JSON.stringify(detail())}`);
    await sleep(5);
  }
}

/** The form a datagram arrives in (relayed or direct): the sender's source id (u32), then the bytes. */
function withSource(sourceId: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(SOURCE_ID_BYTES + payload.byteLength);
  writeSourceId(out, 0, sourceId);
  out.set(payload, SOURCE_ID_BYTES);
  return out;
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');

/** One end of a call: its socket, demultiplexer, link, events, and a switch that makes it deaf. */
interface End {
  socket: Socket;
  demux: Demux;
  link: DirectLink;
  port: number;
  sourceId: number;
  events: DirectLinkEvent[];
  /** While true, every packet the socket receives is dropped before the demultiplexer. */
  deaf: boolean;
}

interface LinkPair {
  caller: End;
  callee: End;
  callId: string;
  keys: ReturnType<typeof deriveCallKeys>;
  close(): void;
}

/**
 * Two DirectLinks on their own loopback sockets, with one call's keys, each told the other's
 * host candidate; not started. `callerExtra` adds options to the caller's link (a relay hint).
 */
async function linkPair(callerExtra: Partial<DirectLinkOptions> = {}): Promise<LinkPair> {
  const keys = deriveCallKeys(new Uint8Array(randomBytes(32)));
  const callId = randomBytes(16).toString('hex');
  const sockets = [await loopbackSocket(), await loopbackSocket()];
  const ends: End[] = [];
  try {
    const ports = sockets.map((s) => s.address().port);
    for (const [i, role] of (['caller', 'callee'] as const).entries()) {
      const socket = sockets[i];
      const demux = new Demux(
        () => socket,
        async () => {},
      );
      const events: DirectLinkEvent[] = [];
      const link = new DirectLink({
        role,
        callId,
        checkKey: keys.checkKey,
        directPathKey: keys.directPathKey,
        demux,
        socketType: 'ipv4',
        localCandidates: [hostCandidate(ports[i])],
        peerCandidates: [hostCandidate(ports[1 - i])],
        allowLoopback: true,
        onEvent: (e) => events.push(e),
        ...(role === 'caller' ? callerExtra : {}),
      });
      const end: End = { socket, demux, link, port: ports[i], sourceId: i + 1, events, deaf: false };
      socket.on('message', (data, rinfo) => {
        if (!end.deaf) void demux.receive(data, rinfo);
      });
      link.setSourceId(end.sourceId);
      ends.push(end);
    }
  } catch (err) {
    for (const end of ends) end.link.close();
    for (const s of sockets) closeSocket(s);
    throw err;
  }
  const [caller, callee] = ends;
  return {
    caller,
    callee,
    callId,
    keys,
    close: () => {
      for (const end of ends) end.link.close();
      for (const s of sockets) closeSocket(s);
    },
  };
}

const upEvents = (end: End, reason?: 'selected' | 'recovered') => end.events.filter((e) => e.type === 'direct:up' && (reason === undefined || e.reason === reason));

/** Start both links and wait until both have selected a pair and their transports are open. */
async function startAndWaitUp(pair: LinkPair, timeoutMs = 5_000): Promise<void> {
  pair.caller.link.start();
  pair.callee.link.start();
  await until(
    () => [pair.caller, pair.callee].every((end) => upEvents(end, 'selected').length > 0 && end.link.transport.state === 'open'),
    timeoutMs,
    'both links up',
    () => ({ caller: pair.caller.link.report(), callee: pair.callee.link.report() }),
  );
}

/** What one end's direct transport delivers, as hex, in arrival order. */
function collect(end: End): string[] {
  const got: string[] = [];
  end.link.transport.onDatagram((d) => got.push(hex(d)));
  return got;
}

function payload(tag: number, i: number, length = 40): Uint8Array {
  const p = new Uint8Array(length);
  for (let j = 0; j < length; j++) p[j] = (tag * 13 + i * 5 + j) & 0xff;
  p[0] = tag;
  p[1] = i;
  return p;
}

describe('DirectLink over real UDP sockets on 127.0.0.1', () => {
  it('caller and callee select the host pair and carry media both ways as [source id][payload]', async () => {
    const pair = await linkPair();
    const { caller, callee } = pair;
    try {
      await startAndWaitUp(pair);
      for (const [end, peer] of [
        [caller, callee],
        [callee, caller],
      ] as const) {
        const up = upEvents(end, 'selected')[0];
        assert.ok(up.type === 'direct:up');
        assert.equal(up.pair.types, 'host -> host');
        assert.equal(up.pair.remoteAddress, `${LOOPBACK}:${peer.port}`);
        assert.equal(end.link.up, true);
        assert.equal(end.link.transport.kind, 'direct');
        assert.equal(end.link.transport.label, `${LOOPBACK}:${peer.port}`);
        assert.equal(end.link.selected()?.types, 'host -> host');
      }

      const atCaller = collect(caller);
      const atCallee = collect(callee);
      const fromCaller = Array.from({ length: 10 }, (_, i) => payload(0xa1, i));
      const fromCallee = Array.from({ length: 10 }, (_, i) => payload(0xb2, i));
      for (const d of fromCaller) assert.equal(caller.link.transport.send(d), true);
      for (const d of fromCallee) assert.equal(callee.link.transport.send(d), true);
      const wantAtCallee = fromCaller.map((d) => hex(withSource(caller.sourceId, d)));
      const wantAtCaller = fromCallee.map((d) => hex(withSource(callee.sourceId, d)));
      await until(() => wantAtCallee.every((w) => atCallee.includes(w)), 5_000, 'the caller\'s media at the callee', () => atCallee.length);
      await until(() => wantAtCaller.every((w) => atCaller.includes(w)), 5_000, 'the callee\'s media at the caller', () => atCaller.length);
      // Nothing else arrived: no reflection of one's own packets, no duplicates.
      assert.equal(atCallee.length, 10);
      assert.equal(atCaller.length, 10);
      // The largest payload the transport takes (maxPayload, as on the relay) arrives whole.
      const max = caller.link.transport.maxPayload();
      assert.equal(max, DIRECT_MAX_PAYLOAD);
      const largest = payload(0xc3, 0, max);
      assert.equal(caller.link.transport.send(largest), true);
      await until(() => atCallee.length === 11, 5_000, 'the largest payload at the callee');
      assert.equal(atCallee[10], hex(withSource(caller.sourceId, largest)));

      for (const [end, peer, role] of [
        [caller, callee, 'controlling'],
        [callee, caller, 'controlled'],
      ] as const) {
        const report = JSON.parse(JSON.stringify(end.link.report())) as ReturnType<DirectLink['report']>;
        assert.equal(report.role, role);
        assert.equal(report.selected?.types, 'host -> host');
        assert.equal(report.selected?.remoteAddress, `${LOOPBACK}:${peer.port}`);
        assert.deepEqual(report.candidates.gathered, [{ type: 'host', address: LOOPBACK, port: end.port, priority: candidatePriority('host', 'IPv4') }]);
        assert.equal(report.candidates.sent, 1);
        assert.equal(report.candidates.received.length, 1);
        assert.equal(report.candidates.received[0].port, peer.port);
        assert.equal(report.candidates.refused, 0);
        const selectedPair = report.pairs.find((p) => p.remote.port === peer.port);
        assert.ok(selectedPair, 'the pair is in the report');
        assert.equal(selectedPair.state, 'succeeded');
        assert.equal(selectedPair.nominated, true);
        assert.equal(selectedPair.localType, 'host');
        assert.ok(selectedPair.responses >= 1);
        assert.ok(report.checks.requestsSent >= 1, `requestsSent ${report.checks.requestsSent}`);
        assert.ok(report.checks.requestsReceived >= 1, `requestsReceived ${report.checks.requestsReceived}`);
        assert.ok(report.checks.responsesSent >= 1, `responsesSent ${report.checks.responsesSent}`);
        assert.ok(report.checks.responsesReceived >= 1, `responsesReceived ${report.checks.responsesReceived}`);
        assert.equal(report.checks.dropped.unauthenticated, 0);
        assert.equal(report.checks.dropped.wrongCall, 0);
        assert.equal(report.checks.dropped.roleConflict, 0);
        assert.equal(report.media.sent, end === caller ? 11 : 10);
        assert.equal(report.media.received, end === caller ? 10 : 11);
        assert.deepEqual(report.media.drops, { malformed: 0, wrongTag: 0, unknownSource: 0 });
        assert.equal(report.restarts, 0);
      }
      assert.equal(caller.link.report().checks.nominationsSent >= 1, true, 'the caller nominated');
      assert.equal(callee.link.report().checks.nominationsSent, 0, 'the callee never nominates');
    } finally {
      pair.close();
    }
  });

  it("hands the peer's media up under the peer's id in our room (setPeerSourceId), whatever id its relay gave it", async () => {
    // Relays of a federation number a room's members each their own way (docs/federation.md):
    // the callee is 1 on its relay, where the caller is 2; on the caller's relay the caller is
    // 1 and the callee 2. Unmapped, the callee's direct media would reach the caller as its own.
    const pair = await linkPair();
    const { caller, callee } = pair;
    try {
      caller.link.setSourceId(1);
      callee.link.setSourceId(1);
      await startAndWaitUp(pair);
      const atCaller = collect(caller);
      callee.link.transport.send(payload(0xd4, 0));
      await until(() => atCaller.length === 1, 5_000, 'unmapped media at the caller');
      assert.equal(atCaller[0], hex(withSource(1, payload(0xd4, 0))), 'as the peer sent it');
      caller.link.transport.setPeerSourceId(2);
      callee.link.transport.send(payload(0xd4, 1));
      await until(() => atCaller.length === 2, 5_000, 'mapped media at the caller');
      assert.equal(atCaller[1], hex(withSource(2, payload(0xd4, 1))), "under the callee's id in the caller's room");
      // Back to the ids the datagrams carry.
      caller.link.transport.setPeerSourceId(undefined);
      callee.link.transport.send(payload(0xd4, 2));
      await until(() => atCaller.length === 3, 5_000, 'unmapped again');
      assert.equal(atCaller[2], hex(withSource(1, payload(0xd4, 2))));
    } finally {
      pair.close();
    }
  });

  it('a tampered relay hint pointing at an attacker is tried, never selected, and its forgeries are counted and dropped', async () => {
    const attacker = await loopbackSocket();
    const attackerPort = attacker.address().port;
    const wrongKey = new Uint8Array(randomBytes(32));
    const ATTACK = 0xee;
    const received: { firstByte: number; from: number }[] = [];
    let pair: LinkPair | undefined;
    try {
      // A hostile relay adds an unsigned hint with the best priority it can, so the caller checks it first.
      pair = await linkPair({ relayCandidate: { type: 'srflx', address: LOOPBACK, port: attackerPort, priority: 0xffff_ffff } });
      const { caller, callee } = pair;
      const calleeTag = directMediaTags(pair.keys.directPathKey).callee;
      attacker.on('message', (msg, rinfo) => {
        received.push({ firstByte: msg[0], from: rinfo.port });
        if (rinfo.address !== LOOPBACK) return;
        const to = (bytes: Uint8Array) => attacker.send(bytes, rinfo.port, LOOPBACK);
        // 1. Reflect it back as it came.
        to(msg);
        if (msg[0] === 0x30 && msg.length >= 60) {
          // 2. A forged answer to the check: the right transaction and call ids, a wrong key.
          to(
            encodePathCheck(
              {
                type: 'response',
                transactionId: Uint8Array.from(msg.subarray(4, 16)),
                callId: Uint8Array.from(msg.subarray(16, 32)),
                controlling: false,
                tieBreaker: 1n,
                priority: msg.readUInt32BE(40),
                observed: { address: rinfo.address, port: rinfo.port },
              },
              wrongKey,
            ),
          );
          // 3. Forged direct media: a made-up tag, and the peer's real tag (as if sniffed) from
          //    an address no succeeded pair has.
          to(encodeDirectMedia(new Uint8Array(randomBytes(8)), 2, new Uint8Array(64).fill(ATTACK)));
          to(encodeDirectMedia(calleeTag, callee.sourceId, new Uint8Array(64).fill(ATTACK)));
        }
      });
      const atCaller = collect(caller);
      await startAndWaitUp(pair);
      await until(() => received.some((r) => r.firstByte === 0x30), 3_000, 'the attacker got a check');
      const dropped = () => caller.link.checker.stats.dropped;
      const drops = () => caller.link.transport.drops;
      await until(
        () => dropped().unauthenticated >= 1 && dropped().roleConflict >= 1 && drops().wrongTag >= 1 && drops().unknownSource >= 1,
        3_000,
        'the forgeries counted',
        () => ({ checks: dropped(), media: drops() }),
      );
      // Legitimate media still flows, and only it.
      for (let i = 0; i < 5; i++) assert.equal(callee.link.transport.send(payload(0x5c, i)), true);
      await until(() => atCaller.length >= 5, 3_000, 'the callee\'s media at the caller', () => atCaller.length);
      await sleep(100);

      assert.equal(caller.link.selected()?.remoteAddress, `${LOOPBACK}:${callee.port}`);
      assert.equal(caller.link.transport.label, `${LOOPBACK}:${callee.port}`);
      assert.ok(!caller.events.some((e) => e.type === 'direct:up' && e.pair.remoteAddress.endsWith(`:${attackerPort}`)), 'the attacker was never up');
      const report = caller.link.report();
      assert.equal(report.candidates.relayObserved?.port, attackerPort);
      const attackerPair = report.pairs.find((p) => p.remote.port === attackerPort);
      assert.ok(attackerPair, 'the hint made a pair');
      assert.ok(attackerPair.attempts >= 1, 'the attacker\'s pair was checked');
      assert.notEqual(attackerPair.state, 'succeeded');
      assert.equal(attackerPair.responses, 0);
      assert.equal(attackerPair.nominated, false);
      assert.ok(!report.pairs.some((p) => p.remote.port === attackerPort && p.state === 'succeeded'), 'no pair with the attacker\'s port succeeded');
      assert.ok(received.every((r) => r.from === caller.port), 'only the caller wrote to the attacker');
      for (const d of atCaller) {
        assert.ok(!Buffer.from(d, 'hex').subarray(SOURCE_ID_BYTES).every((b) => b === ATTACK), `attacker bytes delivered: ${d}`);
        assert.equal(d.slice(0, 2 * SOURCE_ID_BYTES), '00000002', 'only the callee\'s source id');
      }
      assert.equal(atCaller.length, 5);
      assert.equal(report.media.received, 5);
      // The callee never heard of the attacker.
      assert.ok(!callee.link.report().pairs.some((p) => p.remote.port === attackerPort));
    } finally {
      pair?.close();
      closeSocket(attacker);
    }
  });

  it('direct media with the wrong tag from the validated peer, or the right tag from elsewhere, is dropped and counted', async () => {
    const pair = await linkPair();
    const stranger = await loopbackSocket();
    const { caller, callee } = pair;
    try {
      await startAndWaitUp(pair);
      const tags = directMediaTags(pair.keys.directPathKey);
      const atCaller = collect(caller);
      const sendFrom = (socket: Socket, bytes: Uint8Array) => socket.send(bytes, caller.port, LOOPBACK);
      const base = { ...caller.link.transport.drops };
      // The caller's own tag, from the callee's (validated) address: a reflection.
      sendFrom(callee.socket, encodeDirectMedia(tags.caller, callee.sourceId, payload(0x01, 0)));
      // Another call's tag from the validated address.
      sendFrom(callee.socket, encodeDirectMedia(directMediaTags(new Uint8Array(randomBytes(32))).callee, callee.sourceId, payload(0x02, 0)));
      // The right tag (the callee's) from an address no succeeded pair has.
      sendFrom(stranger, encodeDirectMedia(tags.callee, callee.sourceId, payload(0x03, 0)));
      sendFrom(stranger, encodeDirectMedia(tags.callee, callee.sourceId, payload(0x03, 1)));
      // Source id 0 from the validated address: malformed.
      const zero = encodeDirectMedia(tags.callee, 1, payload(0x04, 0));
      zero.fill(0, 9, 9 + SOURCE_ID_BYTES);
      sendFrom(callee.socket, zero);
      // And the control: the right tag from the validated address is delivered.
      const good = payload(0x05, 0);
      sendFrom(callee.socket, encodeDirectMedia(tags.callee, callee.sourceId, good));
      const drops = () => caller.link.transport.drops;
      await until(
        () => atCaller.length >= 1 && drops().wrongTag - base.wrongTag >= 2 && drops().unknownSource - base.unknownSource >= 2 && drops().malformed - base.malformed >= 1,
        3_000,
        'the bad packets counted and the good one delivered',
        () => ({ drops: drops(), delivered: atCaller.length }),
      );
      await sleep(100);
      assert.deepEqual({ ...drops() }, { wrongTag: base.wrongTag + 2, unknownSource: base.unknownSource + 2, malformed: base.malformed + 1 });
      assert.deepEqual(atCaller, [hex(withSource(callee.sourceId, good))]);
      assert.equal(caller.link.transport.stats().received, 1);
      assert.equal(caller.link.report().media.drops.unknownSource, base.unknownSource + 2);
    } finally {
      pair.close();
      closeSocket(stranger);
    }
  });

  it('a peer gone silent makes the path stale (direct:down), and its answers bring it back (direct:up recovered)', async () => {
    const pair = await linkPair();
    const { caller, callee } = pair;
    try {
      await startAndWaitUp(pair);
      await sleep(400);
      assert.equal(caller.link.transport.state, 'open');
      assert.ok(!caller.events.some((e) => e.type === 'direct:down'), 'up and answering before the silence');
      callee.deaf = true;
      // The checker's staleAfterMs is 800: the caller falls back within 2.5 s of the silence.
      await until(() => caller.events.some((e) => e.type === 'direct:down'), 2_500, 'the caller goes down', () => caller.events);
      const down = caller.events.find((e) => e.type === 'direct:down');
      assert.ok(down?.type === 'direct:down');
      assert.equal(down.reason, 'stale');
      assert.ok((down.silentMs ?? 0) >= 800, `silentMs ${down.silentMs}`);
      assert.notEqual(caller.link.transport.state, 'open');
      assert.equal(caller.link.transport.state, 'connecting');
      assert.equal(caller.link.up, false);
      assert.equal(caller.link.transport.maxPayload(), 0);
      const droppedBefore = caller.link.transport.stats().droppedClosed;
      assert.equal(caller.link.transport.send(payload(0x77, 0)), false, 'no direct media while stale');
      assert.equal(caller.link.transport.stats().droppedClosed, droppedBefore + 1);
      assert.ok(!caller.events.some((e) => e.type === 'direct:up' && e.reason === 'recovered'));

      // The silence ends (well before RESTART_AFTER_STALE_MS): keepalive answers come back.
      await sleep(300);
      callee.deaf = false;
      await until(
        () => upEvents(caller, 'recovered').length > 0 && caller.link.transport.state === 'open',
        3_000,
        'the caller recovers',
        () => ({ events: caller.events, stale: caller.link.checker.stale }),
      );
      const recovered = upEvents(caller, 'recovered')[0];
      assert.ok(recovered.type === 'direct:up');
      assert.equal(recovered.pair.remoteAddress, `${LOOPBACK}:${callee.port}`);
      assert.equal(caller.link.report().restarts, 0, 'recovered without a new round');
      assert.deepEqual(
        caller.events.map((e) => e.type === 'direct:up' || e.type === 'direct:down' ? `${e.type}:${e.reason}` : e.type),
        ['direct:up:selected', 'direct:down:stale', 'direct:up:recovered'],
      );
      // The callee comes back too (its own keepalives went unanswered while it was deaf).
      await until(() => callee.link.transport.state === 'open', 3_000, 'the callee open again');
      // Media flows again.
      const atCallee = collect(callee);
      const d = payload(0x78, 0);
      assert.equal(caller.link.transport.send(d), true);
      await until(() => atCallee.includes(hex(withSource(caller.sourceId, d))), 3_000, 'media after recovery');
    } finally {
      pair.close();
    }
  });
});

describe('a flood of candidate updates (a hostile peer, or a relay replaying them)', () => {
  it('takes MAX_CANDIDATE_UPDATES, drops and counts the rest, keeps its lists bounded, and the media keeps flowing', async () => {
    const pair = await linkPair();
    const { caller, callee } = pair;
    try {
      await startAndWaitUp(pair);
      // 100 updates of 16 fresh candidates each (loopback ports nobody listens on: the checks
      // they cause stay on this machine), as fast as they can come.
      let port = 20_000;
      for (let u = 0; u < 100; u++) {
        const list = Array.from({ length: 16 }, () => ({ type: 'host', address: LOOPBACK, port: port++, priority: candidatePriority('host', 'IPv4', 1) }));
        caller.link.addRemoteCandidates(list);
      }
      const r = caller.link.report();
      assert.equal(r.candidates.updatesReceived, MAX_CANDIDATE_UPDATES);
      assert.equal(r.candidates.updatesDropped, 100 - MAX_CANDIDATE_UPDATES);
      assert.ok(r.candidates.received.length <= 64, `received list ${r.candidates.received.length}`);
      assert.ok(r.pairs.length <= CHECK_DEFAULTS.maxRemoteCandidates + 2, `pairs ${r.pairs.length}`);
      assert.ok(r.candidates.refused > 0, 'candidates over the limit are refused and counted');
      // The new addresses made the caller check again; the real pair is found again and media flows.
      await until(() => caller.link.transport.state === 'open' && callee.link.transport.state === 'open', 5_000, 'both open after the flood', () => caller.link.report().selected);
      const atCallee = collect(callee);
      const d = payload(0x79, 0);
      await until(
        () => {
          caller.link.transport.send(d);
          return atCallee.includes(hex(withSource(caller.sourceId, d)));
        },
        5_000,
        'media after the flood',
      );
      assert.equal(caller.link.selected()?.remoteAddress, `${LOOPBACK}:${callee.port}`);
    } finally {
      pair.close();
    }
  });
});

describe('primeTowards', () => {
  it('skips loopback candidates: nothing goes out', async () => {
    const [socket, receiver] = await Promise.all([loopbackSocket(), loopbackSocket()]);
    let got = 0;
    receiver.on('message', () => got++);
    try {
      const demux = new Demux(
        () => socket,
        async () => {},
      );
      const keys = deriveCallKeys(new Uint8Array(randomBytes(32)));
      const sent = primeTowards({
        demux,
        socketType: 'ipv4',
        checkKey: keys.checkKey,
        callId: randomBytes(16).toString('hex'),
        candidates: [hostCandidate(receiver.address().port), { type: 'srflx', address: '127.0.0.2', port: receiver.address().port, priority: 1 }],
        ttl: 2,
      });
      assert.equal(sent, 0);
      assert.equal(demux.stats.sent, 0);
      await sleep(150);
      assert.equal(got, 0);
    } finally {
      closeSocket(socket);
      closeSocket(receiver);
    }
  });

  /**
   * A stand-in for the socket that records what would be sent (nothing leaves the machine: the
   * candidates here are documentation addresses).
   */
  function recordingSocket() {
    const sends: { host: string; port: number; ttl: number; bytes: Buffer }[] = [];
    let ttl = DEFAULT_TTL;
    const ttls: number[] = [];
    const socket = {
      getSendQueueCount: () => 0,
      setTTL: (value: number) => {
        ttl = value;
        ttls.push(value);
        return value;
      },
      send: (bytes: Uint8Array, port: number, host: string, callback?: (err: Error | null) => void) => {
        sends.push({ host, port, ttl, bytes: Buffer.from(bytes) });
        if (callback) setImmediate(() => callback(null));
      },
    };
    return { socket: socket as unknown as Socket, sends, ttls, ttl: () => ttl };
  }

  it('sends one check per usable candidate with the given TTL, and counts them', async () => {
    const keys = deriveCallKeys(new Uint8Array(randomBytes(32)));
    const callId = randomBytes(16).toString('hex');
    const candidates = [
      { type: 'host', address: '192.0.2.10', port: 4000, priority: 5 },
      { type: 'srflx', address: '203.0.113.7', port: 4001, priority: 4 },
      { type: 'srflx', address: '203.0.113.7', port: 4001, priority: 3 }, // the same endpoint again
      { type: 'host', address: '2001:db8::1', port: 4002, priority: 5 }, // IPv6: for a dual-stack socket only
      { type: 'host', address: '127.0.0.1', port: 4003, priority: 5 }, // loopback
      { type: 'host', address: '169.254.10.1', port: 4004, priority: 5 }, // link-local
      { type: 'host', address: '0.0.0.0', port: 4005, priority: 5 }, // unspecified
      { type: 'host', address: '224.0.0.1', port: 4006, priority: 5 }, // multicast
      { type: 'host', address: '198.51.100.1', port: 0, priority: 5 }, // no port
      { type: 'host', address: 'relay.example', port: 4007, priority: 5 }, // not an address
      'garbage',
    ];
    for (const [socketType, expected] of [
      ['ipv4', ['192.0.2.10:4000', '203.0.113.7:4001']],
      ['ipv4&ipv6', ['::ffff:192.0.2.10:4000', '::ffff:203.0.113.7:4001', '2001:db8::1:4002']],
    ] as const) {
      const rec = recordingSocket();
      const demux = new Demux(
        () => rec.socket,
        async () => {},
      );
      const sent = primeTowards({ demux, socketType, checkKey: keys.checkKey, callId, candidates, ttl: 3 });
      assert.equal(sent, expected.length, socketType);
      assert.equal(demux.stats.sent, expected.length);
      assert.deepEqual(
        rec.sends.map((s) => `${s.host}:${s.port}`),
        expected,
      );
      for (const s of rec.sends) {
        assert.equal(s.ttl, 3, 'the priming TTL');
        const check = decodePathCheck(s.bytes, keys.checkKey);
        assert.equal(check.type, 'request');
        assert.equal(Buffer.from(check.callId).toString('hex'), callId);
        assert.equal(check.controlling, false);
        assert.ok(check.type === 'request' && !check.nominate);
      }
      assert.equal(new Set(rec.sends.map((s) => hex(s.bytes.subarray(4, 16)))).size, expected.length, 'a fresh transaction each');
      // The default TTL is back once the packets left.
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(rec.ttl(), DEFAULT_TTL);
    }
    // At most 16 candidates are looked at.
    const rec = recordingSocket();
    const many = Array.from({ length: 20 }, (_, i) => ({ type: 'host', address: `192.0.2.${i + 1}`, port: 5000, priority: 1 }));
    const demux = new Demux(
      () => rec.socket,
      async () => {},
    );
    assert.equal(primeTowards({ demux, socketType: 'ipv4', checkKey: keys.checkKey, callId, candidates: many, ttl: 2 }), 16);
  });
});

/**
 * The compliance suite's pair: two DirectLinks on loopback, both open; what `a` (the caller)
 * sends arrives at `b` with a's source id in front, as a relay would deliver it.
 */
async function connectDirect(): Promise<MediaTransportPair> {
  const pair = await linkPair();
  try {
    await startAndWaitUp(pair, 8_000);
  } catch (err) {
    pair.close();
    throw err;
  }
  return {
    a: pair.caller.link.transport,
    b: pair.callee.link.transport,
    deliveredAs: (from, p) => withSource(from === 'a' ? pair.caller.sourceId : pair.callee.sourceId, p),
    close: async () => pair.close(),
  };
}

describeMediaTransportCompliance('direct (DirectMediaTransport between two DirectLinks on loopback)', { connect: connectDirect }, { forwardingOverhead: 2 });
