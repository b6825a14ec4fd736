import assert from 'node:assert/strict';
import { type Socket, createSocket } from 'node:dgram';
import { describe, it } from 'node:test';
import { type Candidate, candidatePriority } from '../../core/p2p/candidates.js';
import { type PathCheckEvent, PathChecker } from '../../core/p2p/checks.js';
import { callSecrets } from './helpers.js';

/** Two real UDP sockets on 127.0.0.1 (loopback only: nothing else is ever sent to). */
async function loopbackSocket(): Promise<Socket> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => resolve());
  });
  return socket;
}

function hostCandidate(socket: Socket): Candidate {
  return { type: 'host', address: '127.0.0.1', port: socket.address().port, family: 'IPv4', priority: candidatePriority('host', 'IPv4') };
}

/**
 * The shared socket's sender: a priming packet gets its TTL, and the default comes back once
 * the packet has left (send's callback: dgram sends asynchronously even to an IP literal).
 */
function sender(socket: Socket, sent: string[]) {
  return (bytes: Uint8Array, address: string, port: number, ttl?: number) => {
    assert.equal(address, '127.0.0.1', 'loopback only');
    sent.push(`${port}${ttl === undefined ? '' : ` ttl=${ttl}`}`);
    if (ttl === undefined) {
      socket.send(bytes, port, address);
      return;
    }
    socket.setTTL(ttl);
    socket.send(bytes, port, address, () => socket.setTTL(64));
  };
}

describe('PathChecker over real UDP sockets on 127.0.0.1', () => {
  it('two agents find each other, select the same pair and keep it alive', async () => {
    const [socketA, socketB] = await Promise.all([loopbackSocket(), loopbackSocket()]);
    const secrets = callSecrets();
    const sentA: string[] = [];
    const sentB: string[] = [];
    // A decoy remote candidate on a port nobody listens on: its checks go unanswered.
    const decoy = await loopbackSocket();
    const decoyPort = decoy.address().port;
    decoy.close();
    const a = new PathChecker({
      role: 'controlling',
      ...secrets,
      localCandidates: [hostCandidate(socketA)],
      remoteCandidates: [hostCandidate(socketB), { ...hostCandidate(socketB), type: 'srflx', port: decoyPort, priority: candidatePriority('srflx', 'IPv4') }],
      send: sender(socketA, sentA),
      allowLoopback: true,
      primeTtl: 2,
    });
    const b = new PathChecker({
      role: 'controlled',
      ...secrets,
      localCandidates: [hostCandidate(socketB)],
      remoteCandidates: [hostCandidate(socketA)],
      send: sender(socketB, sentB),
      allowLoopback: true,
    });
    socketA.on('message', (bytes, from) => a.receive(bytes, from));
    socketB.on('message', (bytes, from) => b.receive(bytes, from));
    const eventsA: PathCheckEvent[] = [];
    const eventsB: PathCheckEvent[] = [];
    a.on((event) => eventsA.push(event));
    b.on((event) => eventsB.push(event));
    const selected = (checker: PathChecker, events: PathCheckEvent[]) =>
      new Promise<void>((resolve) => {
        if (events.some((event) => event.type === 'nominated')) resolve();
        else checker.on((event) => event.type === 'nominated' && resolve());
      });
    const started = performance.now();
    try {
      a.start();
      b.start();
      await Promise.race([
        Promise.all([selected(a, eventsA), selected(b, eventsB)]),
        new Promise((_, reject) => setTimeout(() => reject(new Error(`no selection in 3 s: ${JSON.stringify({ a: a.pairs(), b: b.pairs() })}`)), 3_000)),
      ]);
      const elapsed = performance.now() - started;
      assert.ok(elapsed < 2_000, `selected after ${elapsed.toFixed(0)} ms`);
      assert.equal(a.nominated?.remote.port, socketB.address().port);
      assert.equal(b.nominated?.remote.port, socketA.address().port);
      assert.equal(a.nominated?.observed?.port, socketA.address().port);
      assert.equal(a.nominated?.localType, 'host');
      assert.ok((a.nominated?.rttMs ?? Infinity) < 200);
      // The first packet to each remote candidate was a priming one (TTL 2; on loopback it arrives anyway).
      assert.equal(sentA[0], `${socketB.address().port} ttl=2`);
      // Keepalives keep the selected pair fresh.
      await new Promise((resolve) => setTimeout(resolve, 700));
      assert.ok(a.stats.keepalivesSent >= 1 && b.stats.keepalivesSent >= 1);
      assert.ok(performance.now() - (a.lastReceivedAt ?? 0) < 1_000);
      assert.equal(a.stale, false);
      const decoyPair = a.pairs().find((pair) => pair.remote.port === decoyPort);
      assert.notEqual(decoyPair?.state, 'succeeded');
      assert.deepEqual(Object.values(a.stats.dropped).filter((count) => count > 0), []);
      const report = JSON.parse(JSON.stringify(a.report()));
      assert.equal(report.selected.remote.port, socketB.address().port);
      assert.equal(report.pairs.length, 2);
      assert.ok(report.stats.primedSent >= 1);
    } finally {
      a.close();
      b.close();
      socketA.close();
      socketB.close();
    }
  });
});
