/**
 * The real CLI in a client namespace behind each NAT mode of the lab (test/lab/netns.ts),
 * against coturn and two `wzp relay` processes in the wan namespace:
 *  - `wzp netcheck --json` reports the mode's mapping, filtering and port allocation, the
 *    right verdict, both relays' latency, and a report that matches its JSON Schema;
 *  - `wzp predict-ports --json` classifies the allocation, and on the sequential NAT the
 *    next mapping (made by another process) gets the first predicted port;
 *  - `wzp reflect RELAY1 RELAY2 --json` and `wzp reflect RELAY --stun SERVER --json`, each
 *    from one socket, tell cone from symmetric; a dead relay falls back to STUN.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { NetcheckReport } from '../../src/services/netcheck.js';
import type { PredictPortsReport } from '../../src/services/predict-ports.js';
import type { ReflectReport } from '../../src/services/reflect.js';
import { makeHome } from '../helpers/cli.js';
import { jsonResult, loadSchema, type NsRelay, startRelayIn, validate, wzpIn } from '../nat-cli/helpers.js';
import { LAB_NET, type LabTopology, NAT_MODES, NatLab, labAvailable } from './netns.js';

const EIM = 'endpoint-independent';
const AD = 'address-dependent';
const APD = 'address-and-port-dependent';

interface Expected {
  mapping: string;
  filtering: string;
  allocation: string;
  verdict: string;
  reflect: string;
  /** The built-in hard-NAT strategies the verdict names (docs/plugins.md): both for an endpoint-independent NAT, one for each symmetric kind. */
  strategies: string[];
}

const BOTH = ['birthday', 'sequential'];

const EXPECTED: Record<LabTopology, Expected> = {
  none: { mapping: EIM, filtering: EIM, allocation: 'port-preserving', verdict: 'no-nat', reflect: EIM, strategies: BOTH },
  'full-cone': { mapping: EIM, filtering: EIM, allocation: 'port-preserving', verdict: 'easy', reflect: EIM, strategies: BOTH },
  'address-restricted': { mapping: EIM, filtering: AD, allocation: 'port-preserving', verdict: 'easy', reflect: EIM, strategies: BOTH },
  'port-restricted': { mapping: EIM, filtering: APD, allocation: 'port-preserving', verdict: 'easy', reflect: EIM, strategies: BOTH },
  'symmetric-random': { mapping: APD, filtering: APD, allocation: 'random', verdict: 'hard', reflect: 'symmetric', strategies: ['birthday'] },
  'symmetric-sequential': { mapping: APD, filtering: APD, allocation: 'sequential', verdict: 'hard-predictable', reflect: 'symmetric', strategies: ['sequential'] },
};

/** The issue's target for the checks themselves (process start-up is measured, not bounded). */
const NETCHECK_TARGET_MS = 2_000;
const RELAY_PORT = 4433;

const availability = await labAvailable();
const schema = loadSchema('netcheck-report.schema.json');
const summary: string[] = [];

describe('NAT lab: wzp netcheck, predict-ports and reflect from a client namespace', { skip: availability.ok ? false : availability.reason }, () => {
  after(() => {
    if (summary.length > 0) {
      console.log(['mode | mapping | filtering | allocation | verdict | reflect | netcheck ms (checks / process)', ...summary].join('\n'));
    }
  });

  for (const topology of ['none', ...NAT_MODES] as const) {
    const expected = EXPECTED[topology];
    it(`${topology}: ${expected.mapping} mapping, ${expected.filtering} filtering, ${expected.allocation} ports, verdict ${expected.verdict}`, async (t) => {
      const lab = await NatLab.create({ topology, stunInstances: 2 });
      const home = makeHome('wzp-netcheck-lab-');
      const relays: NsRelay[] = [];
      try {
        const client = lab.namespaces.client;
        const config = ['--config-dir', join(home.dir, 'client')];
        relays.push(
          ...(await Promise.all(
            [LAB_NET.stunPrimary, LAB_NET.stunAlternate].map((ip, i) =>
              startRelayIn(lab.namespaces.wan, `${ip}:${RELAY_PORT}`, mkdtempSync(join(home.dir, `relay${i}-`)), home),
            ),
          )),
        );
        const [relay1, relay2] = relays.map((r) => r.address);
        const stun = lab.stun.map((s) => `${s.primary.address}:${s.primary.port}`);

        // netcheck
        const run = await wzpIn(client, ['netcheck', '--json', '--stun', stun.join(','), '--relay', relay1, '--relay', relay2, ...config], home);
        const report = jsonResult<NetcheckReport>(run, 'netcheck');
        t.diagnostic(`netcheck: checks ${report.durationMs.toFixed(0)} ms, process ${run.wallMs.toFixed(0)} ms; ${report.verdict.summary}`);
        assert.deepEqual(validate(report, schema), [], 'the report matches docs/schemas/netcheck-report.schema.json');
        assert.equal(report.meta.schemaVersion, 2);
        assert.match(report.meta.wzpVersion, /^\d+\.\d+\.\d+/);
        assert.ok(report.interfaces.some((a) => a.address === (topology === 'none' ? LAB_NET.directClient : LAB_NET.client)), 'the interfaces list the client address');
        assert.deepEqual(report.meta.flags.relay, [relay1, relay2]);
        assert.equal(report.udp.works, true);
        assert.equal(report.ipv4.status, 'ok');
        assert.equal(report.ipv4.reflexiveAddress?.split(':')[0], topology === 'none' ? LAB_NET.directClient : LAB_NET.routerWan);
        assert.equal(report.ipv4.acrossServers?.mapping, expected.reflect, report.ipv4.acrossServers?.reason);
        assert.equal(report.ipv6.status, 'skipped');
        assert.equal(report.behaviour.status, 'ok', report.behaviour.error?.message);
        assert.equal(report.behaviour.mapping, expected.mapping);
        assert.equal(report.behaviour.filtering, expected.filtering);
        assert.equal(report.behaviour.natDetected, topology !== 'none');
        assert.equal(report.behaviour.hairpinning, topology === 'none' ? 'not-applicable' : 'not-supported');
        assert.equal(report.allocation.kind, expected.allocation, report.allocation.explanation);
        if (expected.allocation === 'sequential') {
          assert.equal(report.allocation.delta, 1);
          const last = Number(report.allocation.observations.at(-1)?.mappedAddress.split(':')[1]);
          assert.deepEqual(report.allocation.prediction.ports, [last + 1, last + 2, last + 3]);
        }
        assert.equal(report.portMapping.available.length, 0, 'no port-mapping daemon in this lab');
        assert.equal(report.verdict.kind, expected.verdict, report.verdict.reasons.join('; '));
        assert.deepEqual(
          (report.verdict.strategies ?? []).map((s) => s.name),
          expected.strategies,
          JSON.stringify(report.verdict.strategies),
        );
        for (const relay of report.relays) {
          assert.equal(relay.status, 'ok', relay.error?.message);
          assert.equal(relay.pingsMs.length, 3);
          assert.ok(relay.medianMs !== undefined && relay.medianMs > 0 && relay.medianMs < 500);
        }
        assert.ok(report.preferredRelay && [relay1, relay2].includes(report.preferredRelay.relay));
        // The 2 s target is measured by `npm run bench` (netcheck.bench.ts); here only a run that
        // is clearly stuck fails (a loaded 2-core machine read 2.1 s once).
        assert.ok(report.durationMs <= 3 * NETCHECK_TARGET_MS, `netcheck took ${report.durationMs} ms`);

        // predict-ports, then one more mapping from another process
        const predicted = jsonResult<PredictPortsReport>(await wzpIn(client, ['predict-ports', '--json', '--stun', stun[0], ...config], home), 'predict-ports');
        assert.equal(predicted.kind, expected.allocation, predicted.explanation);
        assert.equal(predicted.observations.length, 4, 'the RFC 5780 server contributed its four endpoints');
        const next = jsonResult<ReflectReport>(await wzpIn(client, ['reflect', '--json', '--stun', stun[1], ...config], home), 'reflect (next mapping)');
        const nextPort = Number(next.observedAddress.split(':')[1]);
        if (expected.allocation === 'sequential') {
          assert.equal(predicted.prediction.confidence, 1);
          assert.equal(nextPort, predicted.prediction.ports[0], `predicted ${predicted.prediction.ports.join(', ')}, the next mapping got ${nextPort}`);
        } else if (expected.allocation === 'random') {
          assert.deepEqual(predicted.prediction.ports, []);
        } else {
          assert.deepEqual(predicted.prediction.ports, [predicted.localPort], 'a preserving NAT keeps the local port');
          assert.equal(next.observedAddress.split(':')[1], next.localAddress.split(':')[1], 'and so did the next mapping');
        }

        // reflect from one socket: two relays, then a relay and a STUN server on another IP
        const twoRelays = jsonResult<ReflectReport>(await wzpIn(client, ['reflect', relay1, relay2, '--json', ...config], home), 'reflect two relays');
        assert.equal(twoRelays.mapping, expected.reflect, twoRelays.reason);
        assert.deepEqual(twoRelays.observations.map((o) => o.via), ['quic', 'quic']);
        assert.equal(twoRelays.observedAddress, twoRelays.observations[0].observedAddress);
        const relayAndStun = jsonResult<ReflectReport>(
          await wzpIn(client, ['reflect', relay1, '--stun', `${LAB_NET.stunAlternate}:${lab.stun[0].primary.port}`, '--json', ...config], home),
          'reflect relay + STUN',
        );
        assert.equal(relayAndStun.mapping, expected.reflect, relayAndStun.reason);
        assert.deepEqual(relayAndStun.observations.map((o) => o.via), ['quic', 'stun']);
        assert.equal(
          relayAndStun.observations.every((o) => o.observedAddress?.split(':')[1] === relayAndStun.localAddress.split(':')[1]),
          expected.allocation === 'port-preserving',
          'a preserving NAT shows the local port to everyone',
        );

        if (topology === 'port-restricted') {
          const fallback = jsonResult<ReflectReport>(
            await wzpIn(client, ['reflect', `${LAB_NET.stunPrimary}:${RELAY_PORT + 1}`, '--stun', stun[0], '--timeout', '0.5', '--json', ...config], home),
            'reflect with a dead relay',
          );
          assert.equal(fallback.observations[0].error?.name, 'NetworkError', 'nothing listens on the relay port');
          assert.equal(fallback.relay, stun[0], 'the STUN server stood in');
          assert.equal(fallback.observedAddress.split(':')[0], LAB_NET.routerWan);
        }

        summary.push(
          `${topology} | ${report.behaviour.mapping} | ${report.behaviour.filtering} | ${report.allocation.kind}` +
            `${report.allocation.delta === undefined ? '' : ` (step ${report.allocation.delta})`} | ${report.verdict.kind} | ${twoRelays.mapping} | ` +
            `${report.durationMs.toFixed(0)} / ${run.wallMs.toFixed(0)}`,
        );
      } finally {
        await Promise.all(relays.map((r) => r.stop()));
        await lab.destroy();
        home.cleanup();
      }
    });
  }
});
