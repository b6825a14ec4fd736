/**
 * The hard-NAT plan executor (core/p2p/hard-nat.ts) over real UDP sockets on 127.0.0.1
 * (loopback only: nothing is ever sent anywhere else). Without a NAT in between, what is
 * tested is the executor's own promise: side sockets carry authenticated probes, the socket
 * the peer answered keeps the pair (routes), the others close, plans are cut to the peer's
 * addresses and their budgets, and nothing runs without both consents.
 */
import assert from 'node:assert/strict';
import { type Socket, createSocket } from 'node:dgram';
import { after, describe, it } from 'node:test';
import type { NatProfile, NatStrategy, ProbePlan, StrategyContext } from '../../core/nat/strategy-types.js';
import { PathChecker } from '../../core/p2p/checks.js';
import { HardNatRunner } from '../../core/p2p/hard-nat.js';
import { Demux, pathCheckClass } from '../../core/transport/demux.js';
import { callSecrets } from './helpers.js';

const sockets: Socket[] = [];
after(() => {
  for (const s of sockets) {
    try {
      s.close();
    } catch {
      // closed
    }
  }
});

async function loopbackSocket(host = '127.0.0.1'): Promise<Socket> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, host, () => resolve());
  });
  sockets.push(socket);
  return socket;
}

/** One side: a socket, its demultiplexer and a checker that knows no candidate of the peer. */
async function side(role: 'controlling' | 'controlled', secrets: ReturnType<typeof callSecrets>) {
  const socket = await loopbackSocket();
  const demux = new Demux(() => socket, () => Promise.resolve());
  socket.on('message', (data, from) => void demux.receive(data, from));
  const checker = new PathChecker({
    role,
    ...secrets,
    localCandidates: [],
    send: (bytes, address, port) => void demux.send(bytes, { host: address, port }),
    allowLoopback: true,
    staleAfterMs: 1000,
    keepaliveIntervalMs: 200,
  });
  demux.register(pathCheckClass((data, from) => void checker.receive(data, from)));
  checker.start();
  return { socket, demux, checker, endpoint: { address: '127.0.0.1', port: socket.address().port } };
}

function profile(mapping: NatProfile['mapping'], consent = true): NatProfile {
  return { mapping, filtering: 'address-and-port-dependent', allocation: { kind: mapping === 'endpoint-independent' ? 'port-preserving' : 'random', recentPorts: [] }, reflexive: [], consent };
}

/** A strategy from a function: the hard side (address-and-port-dependent mapping) gets `hard`, the other `easy`. */
function strategy(name: string, halves: { hard?: (c: StrategyContext) => ProbePlan | undefined; easy?: (c: StrategyContext) => ProbePlan | undefined }): NatStrategy {
  return {
    name,
    version: '1.0.0',
    description: name,
    applicable: () => true,
    plan: (c) => (c.local.mapping === 'endpoint-independent' ? halves.easy?.(c) : halves.hard?.(c)),
    describeFor: () => undefined,
  };
}

function plan(p: Partial<ProbePlan> & Pick<ProbePlan, 'targets'>): ProbePlan {
  return { strategy: 'test', sockets: 0, startAfterMs: 0, ratePerSecond: 200, budget: { packets: 100, ms: 2000 }, expectedSuccess: 0.9, rationale: 'test', ...p };
}

describe('hard-NAT plans over real UDP sockets on 127.0.0.1', () => {
  it('side sockets probe the peer; the one it answered keeps the pair, the direct path stays alive on it', async () => {
    const secrets = callSecrets();
    const a = await side('controlling', secrets); // the easy side
    const b = await side('controlled', secrets); // the hard side: 8 side sockets toward A
    const spray = strategy('spray', { hard: () => plan({ sockets: 8, targets: [a.endpoint], budget: { packets: 64, ms: 3000 } }) });
    const runnerB = new HardNatRunner({
      strategies: [spray],
      local: profile('address-and-port-dependent'),
      remote: profile('endpoint-independent'),
      remoteAddresses: ['127.0.0.1'],
      role: 'controlled',
      checker: b.checker,
      demux: b.demux,
      families: ['IPv4'],
    });
    const runnerA = new HardNatRunner({
      strategies: [spray],
      local: profile('endpoint-independent'),
      remote: profile('address-and-port-dependent'),
      remoteAddresses: ['127.0.0.1'],
      role: 'controlling',
      checker: a.checker,
      demux: a.demux,
      families: ['IPv4'],
    });
    try {
      const started = performance.now();
      await Promise.all([runnerA.run(), runnerB.run()]);
      assert.ok(performance.now() - started < 2500, 'the slot ended at the success, not at its 3 s budget');
      const attempt = runnerB.report().attempts[0];
      assert.equal(attempt.outcome, 'succeeded');
      assert.equal(attempt.socketsOpened, 8);
      assert.ok(attempt.packetsSent >= 1 && attempt.packetsSent <= 64, `${attempt.packetsSent} probes`);
      assert.equal(runnerA.report().attempts[0].plan, undefined, 'the easy side had nothing to send');
      // Both select: B the pair toward A's socket, A the pair toward one of B's side sockets.
      const deadline = Date.now() + 3000;
      while ((a.checker.nominated === undefined || b.checker.nominated === undefined) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(b.checker.nominated?.remote.port, a.endpoint.port);
      const sidePort = a.checker.nominated?.remote.port;
      assert.ok(sidePort !== undefined && sidePort !== b.endpoint.port, 'A reaches B through a side socket, not B main socket');
      assert.equal(runnerB.report().sideSocketInUse, true);
      assert.equal(b.demux.routeOf({ host: '127.0.0.1', port: a.endpoint.port }) !== undefined, true);
      // Keepalives go on through the kept side socket: neither side goes stale.
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(a.checker.stale, false);
      assert.equal(b.checker.stale, false);
      assert.equal(a.checker.nominated?.remote.port, sidePort);
      // The other seven side sockets are closed: A's checks to them go unanswered.
      const others = a.checker.pairs().filter((p) => p.remote.port !== sidePort && p.remote.port !== b.endpoint.port);
      assert.ok(others.every((p) => p.state !== 'succeeded' || (p.succeededAt ?? 0) <= (a.checker.nominated?.succeededAt ?? Infinity) + 50));
    } finally {
      runnerA.close();
      runnerB.close();
      a.checker.close();
      b.checker.close();
    }
    assert.equal(runnerB.report().sideSocketInUse, false, 'close() closes the kept side socket too');
  });

  it("a plan is cut to the peer's addresses, its packet budget and its time", async () => {
    const secrets = callSecrets();
    const a = await side('controlling', secrets);
    const elsewhere = await loopbackSocket('127.0.0.2');
    let strayPackets = 0;
    elsewhere.on('message', () => strayPackets++);
    const silent = await loopbackSocket();
    let silentPackets = 0;
    silent.on('message', () => silentPackets++);
    const greedy = strategy('greedy', {
      easy: () =>
        plan({
          targets: [
            { address: '127.0.0.2', port: elsewhere.address().port }, // not the peer's: never probed
            { address: '127.0.0.1', port: silent.address().port },
            { address: 'not an address', port: 1 },
            { address: '127.0.0.1', port: 70_000 },
          ],
          sockets: 5000,
          ratePerSecond: 100,
          budget: { packets: 20, ms: 500 },
        }),
    });
    const runner = new HardNatRunner({
      strategies: [greedy],
      local: profile('endpoint-independent'),
      remote: profile('address-and-port-dependent'),
      remoteAddresses: ['127.0.0.1'],
      role: 'controlling',
      checker: a.checker,
      demux: a.demux,
      families: ['IPv4'],
      limits: { maxSockets: 4 },
      openSocket: async () => loopbackSocket(),
    });
    const started = performance.now();
    await runner.run();
    const took = performance.now() - started;
    await new Promise((r) => setTimeout(r, 50));
    const attempt = runner.report().attempts[0];
    try {
      assert.equal(attempt.outcome, 'time-up');
      assert.ok(took >= 480 && took < 1500, `the slot took ${took.toFixed(0)} ms (budget 500)`);
      assert.equal(attempt.refusedTargets, 3);
      assert.deepEqual(attempt.clamped, ['sockets']);
      assert.equal(attempt.socketsOpened, 4);
      assert.equal(attempt.packetsSent, 20);
      assert.equal(silentPackets, 20, 'every probe went to the allowed target');
      assert.equal(strayPackets, 0, 'nothing went to an address the peer did not announce');
      assert.equal(a.checker.stats.probesSent, 20);
    } finally {
      runner.close();
      a.checker.close();
    }
  });

  it('nothing runs without both consents; a strategy that throws is recorded and the next one runs', async () => {
    const secrets = callSecrets();
    const a = await side('controlling', secrets);
    const silent = await loopbackSocket();
    let calls = 0;
    const counted = strategy('counted', {
      easy: () => {
        calls++;
        return plan({ targets: [{ address: '127.0.0.1', port: silent.address().port }], budget: { packets: 3, ms: 100 } });
      },
    });
    const noConsent = new HardNatRunner({
      strategies: [counted],
      local: profile('endpoint-independent'),
      remote: profile('address-and-port-dependent', false),
      remoteAddresses: ['127.0.0.1'],
      role: 'controlling',
      checker: a.checker,
      demux: a.demux,
      families: ['IPv4'],
    });
    await noConsent.run();
    assert.equal(calls, 0);
    assert.deepEqual(noConsent.report().attempts, []);
    assert.deepEqual(noConsent.report().consent, { local: true, remote: false });

    const broken: NatStrategy = { ...counted, name: 'broken', plan: () => { throw new Error('plugin bug'); } };
    const runner = new HardNatRunner({
      strategies: [broken, counted],
      local: profile('endpoint-independent'),
      remote: profile('address-and-port-dependent'),
      remoteAddresses: ['127.0.0.1'],
      role: 'controlling',
      checker: a.checker,
      demux: a.demux,
      families: ['IPv4'],
    });
    await runner.run();
    const [first, second] = runner.report().attempts;
    assert.equal(first.outcome, 'error');
    assert.match(first.error ?? '', /plugin bug/);
    assert.equal(second.strategy, 'counted');
    assert.equal(second.packetsSent, 3);
    runner.close();
    a.checker.close();
  });
});
