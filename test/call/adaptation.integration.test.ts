/**
 * Adaptive quality on a real network path: alice reaches the relay through an impairment
 * proxy (the media-engine emulator applied to real UDP on loopback), bob directly. Under 30%
 * loss both directions drop tier; when the loss stops they climb back.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { UdpImpairmentProxy } from '../../core/net/udp-proxy.js';
import { makeHome, parseJsonDocument, runCli, startRelayProcess, type CliHome, type RunningRelay } from '../helpers/cli.js';

describe('adaptive quality through an impairment proxy', () => {
  let relayHome: CliHome;
  let relay: RunningRelay;
  let proxy: UdpImpairmentProxy;
  const homes: CliHome[] = [];

  before(async () => {
    relayHome = makeHome('wzp-relay-');
    relay = await startRelayProcess(['--listen', '127.0.0.1:0'], relayHome);
    const port = Number(relay.address.split(':')[1]);
    proxy = await UdpImpairmentProxy.start({ target: { host: '127.0.0.1', port } });
  });
  after(async () => {
    await proxy?.stop();
    await relay?.stop('SIGKILL');
    relayHome.cleanup();
    for (const h of homes) h.cleanup();
  });

  test('30% loss moves both directions down a tier; clean network moves them back up', async () => {
    const alice = makeHome('wzp-alice-');
    const bob = makeHome('wzp-bob-');
    homes.push(alice, bob);
    const common = ['--room', 'adapt', '--duration', '30', '--no-playback', '--relay-fingerprint', relay.fingerprint, '--json'];
    const a = runCli(['call', `127.0.0.1:${proxy.port}`, '--tone', '440', '--alias', 'alice', ...common], alice, 90_000);
    const b = runCli(['call', relay.address, '--tone', '880', '--alias', 'bob', ...common], bob, 90_000);
    await new Promise((r) => setTimeout(r, 4000));
    const lossy = { loss: { kind: 'bernoulli' as const, lossPct: 30 } };
    proxy.setImpairment({ up: lossy, down: lossy });
    await new Promise((r) => setTimeout(r, 8000));
    proxy.setImpairment({});
    const [ra, rb] = await Promise.all([a, b]);
    assert.equal(ra.code, 0, ra.stderr);
    assert.equal(rb.code, 0, rb.stderr);
    for (const [who, r] of [
      ['alice', ra],
      ['bob', rb],
    ] as const) {
      const report = parseJsonDocument(r).result as any;
      const changes = report.tierChanges as { from: string; to: string; atMs: number }[];
      const down = changes.find((c) => c.from === 'GOOD');
      assert.ok(down, `${who} never left GOOD: ${JSON.stringify(changes)}`);
      const up = changes.find((c) => c.atMs > down.atMs && c.to === 'GOOD');
      assert.ok(up, `${who} never came back to GOOD: ${JSON.stringify(changes)}`);
      assert.equal(report.tier, 'GOOD');
      // No flapping: one way down and back, a few changes at most.
      assert.ok(changes.length <= 4, `${who} changed tier ${changes.length} times`);
    }
    assert.ok(proxy.counters.upIn > proxy.counters.upOut, 'the proxy did drop packets');
  });
});
