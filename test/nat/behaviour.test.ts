import assert from 'node:assert/strict';
import type dgram from 'node:dgram';
import { afterEach, beforeEach, describe, it } from 'node:test';
import {
  answerWindowMs,
  classifyFiltering,
  classifyMapping,
  discoverNatBehaviour,
  filteringProbeResult,
  lifetimeIntervals,
  measureBindingLifetime,
  summariseLifetime,
} from '../../core/nat/behaviour.js';
import { type NatProgressEvent, type ProbeOutcome, StunClient, type StunMessageInfo } from '../../core/nat/stun.js';
import { closeUdpSocket, openUdpSocket } from '../../core/nat/udp.js';
import { type FakeStunServer, startFakeStunServer } from './fake-stun-server.js';

const A = { address: '198.51.100.7', port: 40000 };
const B = { address: '198.51.100.7', port: 40001 };
const C = { address: '198.51.100.7', port: 40002 };
const PRIMARY = { address: '203.0.113.1', port: 3478 };
const OTHER = { address: '203.0.113.2', port: 3479 };

function answered(from: typeof A, cls: StunMessageInfo['cls'] = 'success'): ProbeOutcome {
  const message: StunMessageInfo = { cls, method: 1, transactionId: '00', mappedAddress: A };
  return { answered: true, label: 'x', to: PRIMARY, from, message, attempts: 1, elapsedMs: 1 };
}
const silent: ProbeOutcome = { answered: false, label: 'x', to: PRIMARY, attempts: 3, elapsedMs: 250 };

describe('RFC 5780 classification rules', () => {
  it('mapping: compares the three mapped addresses', () => {
    assert.equal(classifyMapping(A, A, A), 'endpoint-independent');
    assert.equal(classifyMapping(A, A), 'endpoint-independent', 'test III not needed');
    assert.equal(classifyMapping(A, B, B), 'address-dependent');
    assert.equal(classifyMapping(A, B, C), 'address-and-port-dependent');
    assert.equal(classifyMapping(A), 'unknown', 'no OTHER-ADDRESS');
    assert.equal(classifyMapping(A, B), 'unknown', 'test III unanswered');
  });

  it('filtering: which CHANGE-REQUEST answers got through', () => {
    assert.equal(classifyFiltering('answered', 'answered'), 'endpoint-independent');
    assert.equal(classifyFiltering('answered', 'blocked'), 'endpoint-independent');
    assert.equal(classifyFiltering('blocked', 'answered'), 'address-dependent');
    assert.equal(classifyFiltering('blocked', 'blocked'), 'address-and-port-dependent');
    assert.equal(classifyFiltering('invalid', 'blocked'), 'unknown');
    assert.equal(classifyFiltering('blocked', 'invalid'), 'unknown');
  });

  it('a CHANGE-REQUEST answer counts only from the requested origin', () => {
    assert.equal(filteringProbeResult(answered(OTHER), OTHER), 'answered');
    assert.equal(filteringProbeResult(answered(PRIMARY), OTHER), 'invalid', 'server ignored CHANGE-REQUEST');
    assert.equal(filteringProbeResult(answered(OTHER, 'error'), OTHER), 'invalid');
    assert.equal(filteringProbeResult(silent, OTHER), 'blocked');
  });

  it('the answer window scales with the RTT between a floor and a ceiling', () => {
    assert.equal(answerWindowMs(0.3), 250);
    assert.equal(answerWindowMs(40), 400);
    assert.equal(answerWindowMs(40, { rtts: 4, minMs: 100 }), 160);
    assert.equal(answerWindowMs(2_000), 5_000);
  });

  it('binding lifetime bounds come from the first expired check', () => {
    const check = (afterMs: number, alive: boolean) => ({ afterMs, alive });
    assert.deepEqual(summariseLifetime([check(1000, true), check(5000, true), check(10000, false)]), {
      checks: [check(1000, true), check(5000, true), check(10000, false)],
      aliveForAtLeastMs: 5000,
      expiredWithinMs: 10000,
    });
    assert.equal(summariseLifetime([check(1000, false)]).aliveForAtLeastMs, 0);
    assert.equal(summariseLifetime([check(1000, true)]).expiredWithinMs, undefined);
    assert.equal(summariseLifetime([check(1000, true), check(2000, false), check(5000, true)]).aliveForAtLeastMs, 1000);
  });

  it('binding lifetime intervals are bounded', () => {
    assert.deepEqual(lifetimeIntervals({ maxMs: 10_000 }), [1_000, 2_000, 5_000, 10_000]);
    assert.deepEqual(lifetimeIntervals({ intervalsMs: [300, 100] }), [100, 300]);
    assert.throws(() => lifetimeIntervals({ intervalsMs: [] }), { name: 'UsageError' });
    assert.throws(() => lifetimeIntervals({ intervalsMs: Array(17).fill(100) }), { name: 'UsageError' });
    assert.throws(() => lifetimeIntervals({ maxMs: 10 }), { name: 'UsageError' });
  });
});

describe('discovery against a loopback RFC 5780 server (no NAT)', () => {
  let server: FakeStunServer;
  let socket: dgram.Socket;

  beforeEach(async () => {
    server = await startFakeStunServer();
    socket = await openUdpSocket('udp4');
  });
  afterEach(async () => {
    await closeUdpSocket(socket);
    await server.close();
  });

  it('finds no NAT: endpoint-independent mapping and filtering, hairpinning not applicable', async () => {
    const events: NatProgressEvent[] = [];
    const result = await discoverNatBehaviour(socket, server.primary, { onProgress: (e) => events.push(e) });
    assert.equal(result.natDetected, false);
    assert.deepEqual(result.mappedAddress, { address: '127.0.0.1', port: socket.address().port });
    assert.deepEqual(result.localAddress, result.mappedAddress);
    assert.deepEqual(result.otherAddress, server.other);
    assert.equal(result.mapping, 'endpoint-independent');
    assert.equal(result.filtering, 'endpoint-independent');
    assert.equal(result.hairpinning, 'not-applicable');
    assert.deepEqual(
      result.probes.map((p) => [p.name, p.answered]),
      [
        ['mapping-primary', true],
        ['mapping-alternate-ip', true],
        ['mapping-alternate-ip-port', true],
        ['filtering-change-ip-port', true],
        ['filtering-change-port', true],
      ],
    );
    assert.deepEqual(result.probes.find((p) => p.name === 'filtering-change-ip-port')?.from, server.other);
    assert.ok(events.some((e) => e.type === 'nat:probe-sent') && events.some((e) => e.type === 'nat:probe-answered'));
    assert.ok(result.durationMs < result.answerWindowMs, `all answered: no window expired, took ${result.durationMs} ms`);
    assert.equal(socket.listenerCount('message'), 0, 'its own client detached from the caller socket');
  });

  it('sends the filtering probes from another socket than the mapping probes', async () => {
    await discoverNatBehaviour(socket, server.primary);
    const destinations = (fromOurSocket: boolean) =>
      new Set(server.requests.filter((r) => (r.from.port === socket.address().port) === fromOurSocket).map((r) => `${r.to.address}:${r.to.port}`));
    const { primary, other } = server;
    assert.deepEqual(
      destinations(true),
      new Set([`${primary.address}:${primary.port}`, `${other.address}:${primary.port}`, `${other.address}:${other.port}`]),
      'test I and the two mapping probes',
    );
    assert.deepEqual(destinations(false), new Set([`${primary.address}:${primary.port}`]), 'CHANGE-REQUESTs, only to the primary');
  });

  it('counts dropped CHANGE-REQUEST answers as filtering after one answer window, not seconds', async () => {
    server.behaviour = { changeRequest: 'drop' };
    const result = await discoverNatBehaviour(socket, server.primary, { answerWindow: { minMs: 150 } });
    assert.equal(result.filtering, 'address-and-port-dependent');
    assert.equal(result.answerWindowMs, Math.max(150, 10 * result.rttMs));
    assert.ok(result.durationMs >= result.answerWindowMs && result.durationMs < result.answerWindowMs + 300, `one window, took ${result.durationMs} ms`);
  });

  it('reports unknown filtering when the server ignores CHANGE-REQUEST', async () => {
    server.behaviour = { changeRequest: 'ignore' };
    const result = await discoverNatBehaviour(socket, server.primary);
    assert.equal(result.filtering, 'unknown');
    assert.equal(result.mapping, 'endpoint-independent');
    assert.match(result.notes.join('\n'), /CHANGE-REQUEST/);
  });

  it('reports unknown mapping and filtering for a server without OTHER-ADDRESS', async () => {
    server.behaviour = { otherAddress: false };
    const result = await discoverNatBehaviour(socket, server.primary);
    assert.equal(result.mapping, 'unknown');
    assert.equal(result.filtering, 'unknown');
    assert.equal(result.probes.length, 1);
    assert.match(result.notes.join('\n'), /OTHER-ADDRESS/);
  });

  it('fails with NetworkError when the server is silent, bounded by the retransmission schedule', async () => {
    server.behaviour = { silent: true };
    const client = new StunClient(socket, { initialRtoMs: 20 });
    try {
      const started = performance.now();
      await assert.rejects(discoverNatBehaviour(socket, server.primary, { client }), { name: 'NetworkError' });
      const elapsed = performance.now() - started;
      assert.ok(elapsed >= 280 && elapsed < 1_000, `20 ms × (2^4 − 1) = 300 ms, took ${elapsed}`);
      assert.equal(socket.listenerCount('message'), 1, 'a caller-provided client stays attached');
    } finally {
      client.close();
    }
  });

  it('aborts through the signal', async () => {
    server.behaviour = { silent: true };
    await assert.rejects(discoverNatBehaviour(socket, server.primary, { signal: AbortSignal.timeout(50) }), { name: 'AbortError' });
  });

  it('measures a binding lifetime through RESPONSE-PORT (loopback: never expires)', async () => {
    const lifetime = await measureBindingLifetime(server.primary, 'udp4', { intervalsMs: [50, 100] });
    assert.equal(lifetime.measurable, true);
    assert.deepEqual(lifetime.checks, [
      { afterMs: 50, alive: true },
      { afterMs: 100, alive: true },
    ]);
    assert.equal(lifetime.aliveForAtLeastMs, 100);
    assert.equal(lifetime.expiredWithinMs, undefined);
  });
});
