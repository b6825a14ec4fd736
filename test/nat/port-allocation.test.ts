import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  MAX_SEQUENTIAL_DELTA,
  type PortObservation,
  WRAP_FLOOR_PORT,
  advancePort,
  classifyPortAllocation,
  detectPortAllocation,
  predictPorts,
  rfc5780Endpoints,
} from '../../core/nat/port-allocation.js';
import { closeUdpSocket, openUdpSocket } from '../../core/nat/udp.js';
import { startFakeStunServer } from './fake-stun-server.js';

const LOCAL_PORT = 50000;

/** Observations for external ports in allocation order, each to a distinct server port. */
function observed(ports: readonly number[], localPort = LOCAL_PORT): PortObservation[] {
  return ports.map((port, i) => ({
    server: { address: '203.0.113.1', port: 3478 + i },
    localPort,
    mapped: { address: '198.51.100.1', port },
  }));
}

const portArb = fc.integer({ min: WRAP_FLOOR_PORT, max: 65535 });
const deltaArb = fc.integer({ min: -MAX_SEQUENTIAL_DELTA, max: MAX_SEQUENTIAL_DELTA }).filter((d) => d !== 0);

/** A sequential NAT: start, then `count` − 1 steps of `delta`, wrapping in 1024..65535. */
function sequence(start: number, delta: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => advancePort(start, delta * i));
}

describe('port allocation classification', () => {
  it('needs at least three answers', () => {
    assert.equal(classifyPortAllocation(observed([40000, 40001])).kind, 'unknown');
    assert.equal(classifyPortAllocation([]).kind, 'unknown');
  });

  it('port-preserving: every external port is the local port', () => {
    const allocation = classifyPortAllocation(observed([LOCAL_PORT, LOCAL_PORT, LOCAL_PORT, LOCAL_PORT]));
    assert.equal(allocation.kind, 'port-preserving');
    assert.deepEqual(predictPorts(observed([LOCAL_PORT, LOCAL_PORT, LOCAL_PORT]), 3).ports, [LOCAL_PORT]);
  });

  it('fixed: one endpoint-independent mapping on another port', () => {
    const allocation = classifyPortAllocation(observed([61000, 61000, 61000]));
    assert.equal(allocation.kind, 'fixed');
    assert.deepEqual(predictPorts(observed([61000, 61000, 61000]), 2), { allocation, ports: [61000], confidence: 1 });
  });

  it('sequential: constant step, with one jitter and one wraparound tolerated', () => {
    assert.deepEqual(classifyPortAllocation(observed([40000, 40001, 40002, 40003])), {
      kind: 'sequential',
      delta: 1,
      consistency: 1,
      samples: 4,
      reason: 'step 1 in 3 of 3 steps',
    });
    const jitter = classifyPortAllocation(observed([40000, 40002, 40004, 40009, 40011]));
    assert.equal(jitter.kind, 'sequential');
    assert.equal(jitter.delta, 2);
    assert.equal(jitter.consistency, 0.75);
    const wrap = classifyPortAllocation(observed([65534, 65535, 1024, 1025]));
    assert.equal(wrap.kind, 'sequential');
    assert.equal(wrap.delta, 1);
    assert.equal(wrap.consistency, 1);
    const smallPool = classifyPortAllocation(observed([40254, 40255, 40000, 40001]));
    assert.equal(smallPool.kind, 'sequential', 'a 256-port pool wrapping');
    const down = classifyPortAllocation(observed([40010, 40007, 40004]));
    assert.equal(down.delta, -3);
  });

  it('reused mappings (address-dependent NAT) collapse before the steps are judged', () => {
    assert.equal(classifyPortAllocation(observed([40000, 40000, 40001, 40001])).kind, 'unknown', 'two distinct mappings only');
    const allocation = classifyPortAllocation(observed([40000, 40000, 40001, 40001, 40002, 40002]));
    assert.equal(allocation.kind, 'sequential');
    assert.equal(allocation.delta, 1);
  });

  it('random: no consistent small step, two jitters, or a large step', () => {
    assert.equal(classifyPortAllocation(observed([34475, 61438, 3455, 16359])).kind, 'random');
    assert.equal(classifyPortAllocation(observed([40000, 40001, 40005, 40006, 40010])).kind, 'random', 'two jitters');
    assert.equal(classifyPortAllocation(observed([40000, 40100, 40200, 40300])).kind, 'random', 'step above the sequential limit');
    assert.equal(classifyPortAllocation(observed([40000, 40001, 40002, 20000, 20001, 5000])).kind, 'random', 'two wraps');
    assert.equal(classifyPortAllocation(observed([40000, 40001, 40002, 39990])).kind, 'random', 'a short step backwards');
    assert.deepEqual(predictPorts(observed([34475, 61438, 3455, 16359]), 4), {
      allocation: classifyPortAllocation(observed([34475, 61438, 3455, 16359])),
      ports: [],
      confidence: 0,
    });
  });

  it('predicts the next K ports of a sequential NAT, wrapping at the top of the range', () => {
    assert.deepEqual(predictPorts(observed([40000, 40001, 40002]), 3).ports, [40003, 40004, 40005]);
    assert.deepEqual(predictPorts(observed([65531, 65533, 65535]), 2).ports, [1025, 1027]);
    assert.throws(() => predictPorts(observed([40000, 40001, 40002]), 0), { name: 'UsageError' });
  });

  it('property: any sequential sequence is recognised and its continuation predicted', () => {
    fc.assert(
      // Four samples: a wraparound among three leaves only one matching step.
      fc.property(portArb, deltaArb, fc.integer({ min: 4, max: 10 }), fc.integer({ min: 1, max: 5 }), (start, delta, count, k) => {
        const ports = sequence(start, delta, count + k);
        const prediction = predictPorts(observed(ports.slice(0, count)), k);
        assert.equal(prediction.allocation.kind, 'sequential');
        assert.equal(prediction.allocation.delta, delta);
        assert.equal(prediction.confidence, 1);
        assert.deepEqual(prediction.ports, ports.slice(count));
      }),
      { numRuns: 500 },
    );
  });

  it('property: one jitter keeps the classification with lower confidence', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 20000, max: 30000 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 4, max: 10 }),
        fc.nat(),
        fc.integer({ min: 1, max: 50 }),
        (start, delta, count, where, extra) => {
          const ports = sequence(start, delta, count);
          const at = 1 + (where % (count - 1));
          const jittered = ports.map((port, i) => (i >= at ? port + extra : port)); // another host took `extra` ports
          const allocation = classifyPortAllocation(observed(jittered));
          assert.equal(allocation.kind, 'sequential');
          assert.equal(allocation.delta, delta);
          assert.equal(allocation.consistency, (count - 2) / (count - 1));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('property: uniformly random ports are sequential only if they repeat a small step', () => {
    fc.assert(
      fc.property(fc.array(portArb, { minLength: 4, maxLength: 10 }), (ports) => {
        fc.pre(new Set(ports).size === ports.length);
        const kind = classifyPortAllocation(observed(ports)).kind;
        // A random draw that happens to contain two equal small steps is sequential by every
        // rule a NAT could be judged on; with four or more uniform ports that is ~1e-6.
        assert.ok(kind === 'random' || kind === 'sequential');
        if (kind === 'sequential') assert.ok(hasRepeatedSmallStep(ports));
      }),
      { numRuns: 1000 },
    );
  });

  it('advancePort stays within 1024..65535', () => {
    fc.assert(
      fc.property(portArb, fc.integer({ min: -200_000, max: 200_000 }), (port, step) => {
        const next = advancePort(port, step);
        assert.ok(next >= WRAP_FLOOR_PORT && next <= 65535);
        assert.equal(advancePort(next, -step), port);
      }),
    );
  });
});

function hasRepeatedSmallStep(ports: readonly number[]): boolean {
  const steps = ports.slice(1).map((p, i) => p - ports[i]).filter((d) => Math.abs(d) <= MAX_SEQUENTIAL_DELTA);
  return steps.length !== new Set(steps).size;
}

describe('detectPortAllocation', () => {
  it('lists the four RFC 5780 endpoints', () => {
    assert.deepEqual(rfc5780Endpoints({ address: '203.0.113.1', port: 3478 }, { address: '203.0.113.2', port: 3479 }), [
      { address: '203.0.113.1', port: 3478 },
      { address: '203.0.113.1', port: 3479 },
      { address: '203.0.113.2', port: 3478 },
      { address: '203.0.113.2', port: 3479 },
    ]);
  });

  it('probes each endpoint in order from one socket (loopback: port-preserving)', async () => {
    const server = await startFakeStunServer();
    const socket = await openUdpSocket('udp4');
    try {
      const endpoints = rfc5780Endpoints(server.primary, server.other);
      const report = await detectPortAllocation(socket, endpoints);
      assert.equal(report.allocation.kind, 'port-preserving');
      assert.equal(report.observations.length, 4);
      assert.deepEqual(report.unanswered, []);
      assert.deepEqual(
        server.requests.map((r) => r.to),
        endpoints,
      );
      assert.ok(server.requests.every((r) => r.from.port === socket.address().port));
    } finally {
      await closeUdpSocket(socket);
      await server.close();
    }
  });

  it('rejects fewer than three or duplicate endpoints', async () => {
    const socket = await openUdpSocket('udp4');
    try {
      const a = { address: '127.0.0.1', port: 3478 };
      await assert.rejects(detectPortAllocation(socket, [a, { ...a, port: 3479 }]), { name: 'UsageError' });
      await assert.rejects(detectPortAllocation(socket, [a, a, { ...a, port: 3479 }]), { name: 'UsageError' });
    } finally {
      await closeUdpSocket(socket);
    }
  });
});
