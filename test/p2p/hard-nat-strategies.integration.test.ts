/**
 * wzp's own strategies (nat-sequential, nat-birthday) through the real plan executor
 * (core/p2p/hard-nat.ts) over UDP sockets on 127.0.0.1. Without a NAT in between, the hard
 * side's first packets reach the easy side directly; what is tested is that both halves of
 * each plan pass the executor as they are (nothing clamped, no target refused), that the hard
 * half opens what it says and finds the pair, and that the easy half had not started its
 * probes by then (so nothing is sprayed at other ports of this machine).
 */
import assert from 'node:assert/strict';
import { type Socket, createSocket } from 'node:dgram';
import { after, describe, it } from 'node:test';
import type { NatProfile, NatStrategy, StrategyLimits } from '../../core/plugin.js';
import { PathChecker } from '../../core/p2p/checks.js';
import { HardNatRunner } from '../../core/p2p/hard-nat.js';
import { Demux, pathCheckClass } from '../../core/transport/demux.js';
import { birthdayNatStrategy } from '../../src/plugins/nat-birthday/index.js';
import { sequentialNatStrategy } from '../../src/plugins/nat-sequential/index.js';
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

async function loopbackSocket(): Promise<Socket> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => resolve());
  });
  sockets.push(socket);
  return socket;
}

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
  });
  demux.register(pathCheckClass((data, from) => void checker.receive(data, from)));
  checker.start();
  return { demux, checker, port: socket.address().port };
}

/** Runs `strategy` between an easy side (A, controlling) and a hard side (B) whose profile is made from B's port. */
async function runPair(strategy: NatStrategy, hardProfile: (port: number) => NatProfile, limits?: Partial<StrategyLimits>) {
  const secrets = callSecrets();
  const a = await side('controlling', secrets);
  const b = await side('controlled', secrets);
  const easy: NatProfile = {
    mapping: 'endpoint-independent',
    filtering: 'address-and-port-dependent',
    allocation: { kind: 'port-preserving', recentPorts: [a.port, a.port, a.port] },
    reflexive: [{ address: '127.0.0.1', port: a.port }],
    consent: true,
  };
  const hard = hardProfile(b.port);
  // The link's priming TTL, as calls give it: open-only halves go with it (on loopback a
  // packet is delivered whatever its TTL).
  const common = { strategies: [strategy], remoteAddresses: ['127.0.0.1'], families: ['IPv4' as const], openSocket: loopbackSocket, primeTtl: 2, ...(limits ? { limits } : {}) };
  const runnerA = new HardNatRunner({ ...common, local: easy, remote: hard, role: 'controlling', checker: a.checker, demux: a.demux });
  const runnerB = new HardNatRunner({ ...common, local: hard, remote: easy, role: 'controlled', checker: b.checker, demux: b.demux });
  try {
    await Promise.all([runnerA.run(), runnerB.run()]);
    return { easy: runnerA.report(), hard: runnerB.report() };
  } finally {
    runnerA.close();
    runnerB.close();
    a.checker.close();
    b.checker.close();
  }
}

describe("wzp's strategies through the plan executor (127.0.0.1)", () => {
  it('birthday: the hard half opens its sockets and finds the pair; both halves run uncut', async () => {
    // A low rate puts the easy half's start (every hard socket sent once) ~5 s away: the
    // pair is found long before it would probe random ports of this machine.
    const limits = { maxRatePerSecond: 50 };
    const r = await runPair(
      birthdayNatStrategy.create(),
      (port) => ({
        mapping: 'address-and-port-dependent',
        filtering: 'address-and-port-dependent',
        allocation: { kind: 'random', recentPorts: [port] },
        reflexive: [{ address: '127.0.0.1', port }],
        consent: true,
      }),
      limits,
    );
    const hard = r.hard.attempts[0];
    const easy = r.easy.attempts[0];
    assert.equal(hard.strategy, 'birthday');
    assert.equal(hard.outcome, 'succeeded', JSON.stringify(hard));
    assert.deepEqual(hard.clamped, []);
    assert.equal(hard.refusedTargets, 0);
    // At 50 packets/s, opening 256 sockets would leave too little of the 10 s for probing: the
    // schedule takes somewhat fewer (the best product that fits).
    assert.ok((hard.plan?.sockets ?? 0) >= 200 && (hard.plan?.sockets ?? 0) <= 256, `${hard.plan?.sockets} sockets`);
    assert.equal(hard.socketsOpened, hard.plan?.sockets);
    assert.equal(hard.plan?.ttl, 2, 'the hard half goes with the priming TTL');
    assert.equal(easy.plan?.openOnly, false);
    assert.equal(r.hard.sideSocketInUse, true, 'one of its side sockets carries the direct path');
    assert.deepEqual(easy.clamped, []);
    assert.equal(easy.refusedTargets, 0);
    assert.ok((easy.plan?.targets ?? 0) > 100, `${easy.plan?.targets} probes planned`);
    assert.ok((easy.plan?.startAfterMs ?? 0) > 4000, `starts at ${easy.plan?.startAfterMs} ms`);
    assert.equal(easy.packetsSent, 0, 'the pair was found before the easy half started');
    assert.equal(hard.plan?.expectedSuccess, easy.plan?.expectedSuccess);
  });

  it('sequential: the hard half sends from a fresh socket and finds the pair; both halves run uncut', async () => {
    const r = await runPair(sequentialNatStrategy.create(), (port) => ({
      mapping: 'address-and-port-dependent',
      filtering: 'address-and-port-dependent',
      // The walk ended one below B's socket: the easy half's window covers B's ports; the pair
      // is found (B's fresh socket reaching A) before it would start.
      allocation: { kind: 'sequential', delta: 1, recentPorts: [port - 3, port - 2, port - 1], observedAgoMs: 100 },
      reflexive: [{ address: '127.0.0.1', port: port - 1 }],
      consent: true,
    }));
    const hard = r.hard.attempts[0];
    const easy = r.easy.attempts[0];
    assert.equal(hard.strategy, 'sequential');
    assert.equal(hard.outcome, 'succeeded', JSON.stringify(hard));
    assert.deepEqual(hard.clamped, []);
    assert.equal(hard.refusedTargets, 0);
    assert.equal(hard.plan?.sockets, 1, 'a fresh socket');
    assert.equal(hard.socketsOpened, 1);
    assert.equal(hard.plan?.targets, 1);
    assert.equal(hard.plan?.openOnly, true);
    assert.equal(hard.plan?.ttl, 2, 'the hard half goes with the priming TTL');
    assert.equal(easy.plan?.openOnly, false);
    assert.deepEqual(easy.clamped, []);
    assert.equal(easy.refusedTargets, 0);
    assert.equal(easy.plan?.targets, 128);
    assert.equal(easy.packetsSent, 0, 'the pair was found before the easy half started');
  });
});
