/**
 * The relay as the only server: one `wzp relay --listen 203.0.113.1:4433 --stun-alternate
 * 203.0.113.2` on the "internet" side of each NAT mode of the lab (no coturn at all), and the
 * real CLI in the client namespace:
 *  - `wzp netcheck --relay 203.0.113.1:4433 --json` classifies the NAT's mapping, filtering
 *    and port allocation from the relay's RFC 5780 STUN alone, and gives the right verdict;
 *  - `wzp reflect RELAY --json` compares the relay and its other address from one socket;
 *  - `wzp predict-ports --relay RELAY --json` walks the relay's four STUN addresses (on the
 *    sequential NAT the next mapping, made by another process, gets the predicted port).
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

const EXPECTED: Record<LabTopology, { mapping: string; filtering: string; allocation: string; verdict: string; reflect: string }> = {
  none: { mapping: EIM, filtering: EIM, allocation: 'port-preserving', verdict: 'no-nat', reflect: EIM },
  'full-cone': { mapping: EIM, filtering: EIM, allocation: 'port-preserving', verdict: 'easy', reflect: EIM },
  'address-restricted': { mapping: EIM, filtering: AD, allocation: 'port-preserving', verdict: 'easy', reflect: EIM },
  'port-restricted': { mapping: EIM, filtering: APD, allocation: 'port-preserving', verdict: 'easy', reflect: EIM },
  'symmetric-random': { mapping: APD, filtering: APD, allocation: 'random', verdict: 'hard', reflect: 'symmetric' },
  'symmetric-sequential': { mapping: APD, filtering: APD, allocation: 'sequential', verdict: 'hard-predictable', reflect: 'symmetric' },
};
const RELAY = `${LAB_NET.stunPrimary}:4433`;

const availability = await labAvailable();
const schema = loadSchema('netcheck-report.schema.json');
const summary: string[] = [];

describe('NAT lab: a wzp relay with two addresses is the only server', { skip: availability.ok ? false : availability.reason }, () => {
  after(() => {
    if (summary.length > 0) console.log(['mode | mapping | filtering | allocation | verdict | reflect', ...summary].join('\n'));
  });

  for (const topology of ['none', ...NAT_MODES] as const) {
    const expected = EXPECTED[topology];
    it(`${topology}: ${expected.mapping} mapping, ${expected.filtering} filtering, ${expected.allocation} ports, verdict ${expected.verdict}`, async () => {
      const lab = await NatLab.create({ topology, stunInstances: 0 });
      const home = makeHome('wzp-relay-stun-lab-');
      let relay: NsRelay | undefined;
      try {
        relay = await startRelayIn(lab.namespaces.wan, RELAY, mkdtempSync(join(home.dir, 'relay-')), home, ['--stun-alternate', LAB_NET.stunAlternate]);
        const client = lab.namespaces.client;
        const config = ['--config-dir', join(home.dir, 'client')];

        const report = jsonResult<NetcheckReport>(await wzpIn(client, ['netcheck', '--json', '--no-port-mapping', '--relay', RELAY, ...config], home), 'netcheck');
        assert.deepEqual(validate(report, schema), []);
        assert.equal(report.ipv4.servers.length, 1, 'no STUN server but the relay');
        assert.equal(report.ipv4.servers[0].relay, RELAY);
        assert.equal(report.ipv4.reflexiveAddress?.split(':')[0], topology === 'none' ? LAB_NET.directClient : LAB_NET.routerWan);
        assert.equal(report.behaviour.status, 'ok', report.behaviour.reason ?? report.behaviour.error?.message);
        assert.equal(report.behaviour.server, RELAY);
        assert.equal(report.behaviour.mapping, expected.mapping);
        assert.equal(report.behaviour.filtering, expected.filtering);
        assert.equal(report.behaviour.natDetected, topology !== 'none');
        assert.equal(report.allocation.kind, expected.allocation, report.allocation.explanation);
        assert.equal(report.relays[0].status, 'ok', report.relays[0].error?.message);
        assert.equal(report.verdict.kind, expected.verdict, report.verdict.reasons.join('; '));

        const reflected = jsonResult<ReflectReport>(await wzpIn(client, ['reflect', RELAY, '--json', ...config], home), 'reflect');
        assert.deepEqual(reflected.observations.map((o) => o.via), ['quic', 'stun'], 'the relay, then its other address');
        assert.equal(reflected.mapping, expected.reflect, reflected.reason);
        assert.equal(reflected.natDetected, topology !== 'none');

        const predicted = jsonResult<PredictPortsReport>(await wzpIn(client, ['predict-ports', '--json', '--relay', RELAY, ...config], home), 'predict-ports');
        assert.equal(predicted.observations.length, 4, "the relay's four STUN addresses");
        assert.equal(predicted.kind, expected.allocation, predicted.explanation);
        if (expected.allocation === 'sequential') {
          const next = jsonResult<ReflectReport>(await wzpIn(client, ['reflect', '--json', '--stun', `${LAB_NET.stunAlternate}:4433`, ...config], home), 'reflect (next mapping)');
          assert.equal(Number(next.observedAddress.split(':')[1]), predicted.prediction.ports[0], `predicted ${predicted.prediction.ports.join(', ')}`);
        }
        summary.push(`${topology} | ${report.behaviour.mapping} | ${report.behaviour.filtering} | ${report.allocation.kind} | ${report.verdict.kind} | ${reflected.mapping}`);
      } finally {
        await relay?.stop();
        await lab.destroy();
        home.cleanup();
      }
    });
  }
});
