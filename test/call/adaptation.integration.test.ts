/**
 * Adaptive quality on a real network path: alice reaches the relay through an impairment
 * proxy (the media-engine emulator applied to real UDP on loopback), bob directly. Under 30%
 * loss both directions drop tier; when the loss stops they climb back.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeWav } from '../../core/media/wav.js';
import { toneLevel } from '../helpers/tone-level.js';
import { UdpImpairmentProxy } from '../../core/net/udp-proxy.js';
import { makeHome, parseJsonDocument, runCli, startRelayProcess, type CliHome, type CliResult, type RunningRelay } from '../helpers/cli.js';

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

  /**
   * alice (440 Hz) through the proxy and bob (880 Hz) directly, in one room for `seconds`;
   * `lossPct` on alice's path, both ways, from `fromMs` for `forMs`. Both must exit 0.
   * `extraArgs` are each one's further flags (default `--json`).
   */
  async function impairedCall(
    room: string,
    seconds: number,
    loss: { lossPct: number; fromMs: number; forMs: number },
    extraArgs: (who: 'alice' | 'bob', home: CliHome) => string[] = () => ['--json'],
  ): Promise<{ ra: CliResult; rb: CliResult; alice: CliHome; bob: CliHome }> {
    const alice = makeHome('wzp-alice-');
    const bob = makeHome('wzp-bob-');
    homes.push(alice, bob);
    const common = ['--room', room, '--duration', String(seconds), '--no-playback', '--relay-fingerprint', relay.fingerprint];
    const a = runCli(['call', `127.0.0.1:${proxy.port}`, '--tone', '440', '--alias', 'alice', ...extraArgs('alice', alice), ...common], alice, 90_000);
    const b = runCli(['call', relay.address, '--tone', '880', '--alias', 'bob', ...extraArgs('bob', bob), ...common], bob, 90_000);
    await new Promise((r) => setTimeout(r, loss.fromMs));
    const impaired = { loss: { kind: 'bernoulli' as const, lossPct: loss.lossPct } };
    proxy.setImpairment({ up: impaired, down: impaired });
    await new Promise((r) => setTimeout(r, loss.forMs));
    proxy.setImpairment({});
    const [ra, rb] = await Promise.all([a, b]);
    assert.equal(ra.code, 0, ra.stderr);
    assert.equal(rb.code, 0, rb.stderr);
    return { ra, rb, alice, bob };
  }

  test('30% loss moves both directions down a tier; clean network moves them back up', async () => {
    const { ra, rb } = await impairedCall('adapt', 30, { lossPct: 30, fromMs: 4000, forMs: 8000 });
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

  test('a total outage on one member\'s path: it notices, gets back when the path does, and both hear each other again', async () => {
    // bob in human mode (its report to a file), to see what it says about alice.
    const args = (who: 'alice' | 'bob', h: CliHome) =>
      ['--record', join(h.dir, 'heard.wav'), ...(who === 'alice' ? ['--json'] : ['--report', join(h.dir, 'report.json')])];
    const { ra, rb, alice, bob } = await impairedCall('outage', 22, { lossPct: 100, fromMs: 3000, forMs: 7000 }, args);
    const reportA = parseJsonDocument(ra).result as any;
    const reportB = JSON.parse(readFileSync(join(bob.dir, 'report.json'), 'utf8'));
    assert.equal(reportA.endedBy, 'duration');
    assert.equal(reportA.reconnects.length, 1, JSON.stringify(reportA.reconnects));
    // Noticed ~4.5 s into the outage; back within a few seconds of its end (a QUIC handshake
    // that was retrying through the dead path gets through).
    const [lost] = reportA.reconnects;
    assert.ok(lost.atMs > 5000 && lost.atMs + lost.outageMs < 16_000, JSON.stringify(lost));
    // bob's own path was fine all along: no reconnection, and the relay is still his.
    assert.deepEqual(reportB.reconnects, []);
    // Both ends' media is on the UDP media path again (alice's new session probed it afresh,
    // through the same proxy).
    assert.equal(reportA.relay.mediaPath, 'udp');
    assert.equal(reportB.relay.mediaPath, 'udp');
    // alice's new announcement says which session it replaces: bob (and the relay) drop the
    // old one at once, instead of listing alice twice until the relay times the old connection
    // out (8 s after the outage began; alice is usually back before that, and if not, the old
    // one has left first). Never a second alice while the first is still there.
    assert.match(rb.stderr, /alice is back \(reconnected\)|alice left \(.*\)\n(.|\n)*alice joined \(/);
    assert.doesNotMatch(rb.stderr, /alice joined \((?:(?!alice left)[^])*alice joined \(/);
    // The last 4 s are well after the path came back (10 s in) and alice re-joined.
    for (const [who, home, other] of [['alice', alice, 880], ['bob', bob, 440]] as const) {
      const heard = decodeWav(readFileSync(join(home.dir, 'heard.wav'))).samples;
      const level = toneLevel(heard, other, 4);
      assert.ok(level > 1000, `${who} hears ${other} Hz after the outage (level ${level.toFixed(0)})`);
    }
  });
});
