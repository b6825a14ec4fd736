/**
 * Real core/nat code in a client namespace behind each nftables NAT mode of the lab
 * (test/lab/netns.ts), against coturn: behaviour discovery must report the configured
 * mapping and filtering, port allocation the configured allocation, and for the sequential
 * NAT the predicted next port must be the one the NAT hands out.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { NatDependence } from '../../core/nat/behaviour.js';
import type { PortAllocationKind } from '../../core/nat/port-allocation.js';
import type { NatRunnerRequest, NatRunnerResult, PortAllocationRun } from './nat-runner.js';
import { LAB_NET, type LabTopology, NAT_MODES, NatLab, labAvailable } from './netns.js';

interface Expected {
  mapping: NatDependence;
  filtering: NatDependence;
  allocation: PortAllocationKind;
}

const EIM_OR_EIF = 'endpoint-independent';
const AD = 'address-dependent';
const APD = 'address-and-port-dependent';

const EXPECTED: Record<LabTopology, Expected> = {
  none: { mapping: EIM_OR_EIF, filtering: EIM_OR_EIF, allocation: 'port-preserving' },
  'full-cone': { mapping: EIM_OR_EIF, filtering: EIM_OR_EIF, allocation: 'port-preserving' },
  'address-restricted': { mapping: EIM_OR_EIF, filtering: AD, allocation: 'port-preserving' },
  'port-restricted': { mapping: EIM_OR_EIF, filtering: APD, allocation: 'port-preserving' },
  'symmetric-random': { mapping: APD, filtering: APD, allocation: 'random' },
  'symmetric-sequential': { mapping: APD, filtering: APD, allocation: 'sequential' },
};

/**
 * Discovery is phase 1 (one RTT) plus one answer window, max(250 ms, 10 × RTT): ~260 ms here.
 * The bound is structural (no probe may wait past the window) so that a loaded CI machine,
 * whose measured RTT and therefore window grow, does not fail it.
 */
const PHASE1_AND_SCHEDULING_SLACK_MS = 750;

const availability = await labAvailable();
const summary: string[] = [];

function run<R extends NatRunnerRequest>(lab: NatLab, request: R): Promise<NatRunnerResult<R>> {
  return lab.runInClient<NatRunnerResult<R>>(request);
}

describe('NAT lab: behaviour discovery and port allocation', { skip: availability.ok ? false : availability.reason }, () => {
  after(() => {
    if (summary.length > 0) console.log(['mode | mapping | filtering | hairpin | allocation | discovery ms', ...summary].join('\n'));
  });

  for (const topology of ['none', ...NAT_MODES] as const) {
    it(`${topology}: ${EXPECTED[topology].mapping} mapping, ${EXPECTED[topology].filtering} filtering, ${EXPECTED[topology].allocation} ports`, async (t) => {
      const expected = EXPECTED[topology];
      const lab = await NatLab.create({ topology, stunInstances: 2 });
      try {
        const behaviour = await run(lab, { op: 'discover', server: lab.stun[0].primary });
        t.diagnostic(`discovery ${behaviour.durationMs.toFixed(1)} ms (RTT ${behaviour.rttMs.toFixed(2)} ms, window ${behaviour.answerWindowMs} ms)`);
        assert.equal(behaviour.mapping, expected.mapping, JSON.stringify(behaviour.probes));
        assert.equal(behaviour.filtering, expected.filtering, JSON.stringify(behaviour.probes));
        assert.equal(behaviour.natDetected, topology !== 'none');
        assert.equal(behaviour.hairpinning, topology === 'none' ? 'not-applicable' : 'not-supported', 'no lab NAT hairpins');
        assert.equal(behaviour.mappedAddress.address, topology === 'none' ? LAB_NET.directClient : LAB_NET.routerWan);
        assert.ok(
          behaviour.durationMs < behaviour.answerWindowMs + PHASE1_AND_SCHEDULING_SLACK_MS,
          `discovery took ${behaviour.durationMs} ms with a ${behaviour.answerWindowMs} ms window`,
        );

        const [next, ...rest] = lab.stunEndpoints.slice(4);
        assert.ok(next && rest.length > 0, 'the second coturn provides fresh endpoints');
        const ports = await run(lab, { op: 'port-allocation', servers: lab.stunEndpoints.slice(0, 4), k: 3, next });
        const observed = ports.report.observations.map((o) => o.mapped.port);
        t.diagnostic(`local port ${ports.report.localPort}, external ports ${observed.join(', ')} -> ${ports.report.allocation.reason}`);
        assert.equal(ports.report.allocation.kind, expected.allocation, ports.report.allocation.reason);
        assertPrediction(topology, ports);

        summary.push(
          `${topology} | ${behaviour.mapping} | ${behaviour.filtering} | ${behaviour.hairpinning} | ${ports.report.allocation.kind}` +
            `${ports.report.allocation.delta === undefined ? '' : ` (delta ${ports.report.allocation.delta})`} | ${behaviour.durationMs.toFixed(0)}`,
        );
      } finally {
        await lab.destroy();
      }
    });
  }

  it('port-restricted with a 2 s conntrack UDP timeout: binding lifetime between 1 s and 3 s', async () => {
    const lab = await NatLab.create({ topology: 'port-restricted', conntrackUdpTimeoutS: 2 });
    try {
      const behaviour = await run(lab, { op: 'discover', server: lab.stun[0].primary, bindingLifetime: { intervalsMs: [1_000, 3_000] } });
      const lifetime = behaviour.bindingLifetime;
      assert.ok(lifetime, 'lifetime requested');
      assert.equal(lifetime.measurable, true, lifetime.notes.join('; '));
      assert.deepEqual(lifetime.checks, [
        { afterMs: 1_000, alive: true },
        { afterMs: 3_000, alive: false },
      ]);
      assert.equal(lifetime.aliveForAtLeastMs, 1_000);
      assert.equal(lifetime.expiredWithinMs, 3_000);
      assert.equal(behaviour.filtering, APD, 'the other tests still ran alongside');
    } finally {
      await lab.destroy();
    }
  });
});

function assertPrediction(topology: LabTopology, { report, prediction, nextMappedPort }: PortAllocationRun): void {
  const observed = report.observations.map((o) => o.mapped.port);
  switch (report.allocation.kind) {
    case 'port-preserving':
      assert.deepEqual(prediction.ports, [report.localPort]);
      assert.equal(nextMappedPort, report.localPort);
      break;
    case 'sequential':
      assert.equal(report.allocation.delta, 1, 'the lab NAT hands out consecutive ports');
      assert.ok(observed.every((port) => port >= LAB_NET.sequentialPortBase && port < LAB_NET.sequentialPortBase + LAB_NET.sequentialPortCount));
      assert.equal(prediction.confidence, 1);
      assert.deepEqual(prediction.ports, [1, 2, 3].map((i) => observed[observed.length - 1] + i));
      assert.equal(nextMappedPort, prediction.ports[0], 'the next mapping got the predicted port');
      break;
    case 'random':
      assert.deepEqual(prediction.ports, []);
      assert.equal(new Set([...observed, nextMappedPort]).size, observed.length + 1, 'every destination a new port');
      break;
    default:
      assert.fail(`${topology}: unexpected allocation ${report.allocation.kind}`);
  }
}
