import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ImpairmentEmulator, LOSS_PRESETS, impliedLossRate, type ImpairmentOptions } from '../../core/net/impairment.js';

const PACKET_INTERVAL_MS = 20;

/** Send packets 0..count-1 every 20 ms; returns each packet's deliveries (empty when lost). */
function send(emulator: ImpairmentEmulator, count: number): number[][] {
  return Array.from({ length: count }, (_, n) =>
    emulator.process(n, n * PACKET_INTERVAL_MS).map((d) => d.deliverAtMs - n * PACKET_INTERVAL_MS),
  );
}

/** Lengths of the runs of consecutive lost packets. */
function lossRuns(delays: number[][]): number[] {
  const runs: number[] = [];
  let current = 0;
  for (const d of delays) {
    if (d.length === 0) current++;
    else if (current > 0) {
      runs.push(current);
      current = 0;
    }
  }
  if (current > 0) runs.push(current);
  return runs;
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

function assertNear(actual: number, expected: number, relTolerance: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= relTolerance * expected, `${what}: ${actual} not within ${relTolerance * 100}% of ${expected}`);
}

const EVERYTHING: ImpairmentOptions = {
  seed: 42,
  loss: LOSS_PRESETS.congested,
  delayMs: 40,
  jitter: { distribution: 'normal', ms: 15 },
  reorder: { pct: 2, extraDelayMs: 60 },
  duplicatePct: 1,
};

describe('ImpairmentEmulator', () => {
  it('is reproducible: same seed, same deliveries; another seed, other deliveries', () => {
    const a = send(new ImpairmentEmulator(EVERYTHING), 5000);
    const b = send(new ImpairmentEmulator(EVERYTHING), 5000);
    const c = send(new ImpairmentEmulator({ ...EVERYTHING, seed: 43 }), 5000);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });

  it('keeps the loss pattern when only the delay settings change', () => {
    const lost = (opts: ImpairmentOptions) => send(new ImpairmentEmulator(opts), 5000).map((d) => d.length === 0);
    assert.deepEqual(lost(EVERYTHING), lost({ ...EVERYTHING, jitter: { distribution: 'uniform', ms: 80 }, delayMs: 5 }));
  });

  it('loses packets at the configured Bernoulli rate', () => {
    const emulator = new ImpairmentEmulator({ seed: 1, loss: { kind: 'bernoulli', lossPct: 5 } });
    const delays = send(emulator, 100_000);
    const lossRate = delays.filter((d) => d.length === 0).length / delays.length;
    assert.ok(Math.abs(lossRate - 0.05) < 0.003, `loss rate ${lossRate}`);
    assertNear(mean(lossRuns(delays)), 1 / 0.95, 0.05, 'mean run of independent losses');
    assert.equal(emulator.counters.packetsLost, delays.filter((d) => d.length === 0).length);
  });

  for (const name of ['wifi', 'congested'] as const) {
    it(`matches the ${name} Gilbert-Elliott preset: implied loss and burst length`, () => {
      const preset = LOSS_PRESETS[name];
      const emulator = new ImpairmentEmulator({ seed: 7, loss: preset });
      const delays = send(emulator, 200_000);
      const lossRate = delays.filter((d) => d.length === 0).length / delays.length;
      const implied = preset.meanBurstPackets / (preset.meanGoodPackets + preset.meanBurstPackets);
      assert.equal(emulator.impliedLossRate, implied);
      assertNear(lossRate, implied, name === 'wifi' ? 0.15 : 0.05, 'loss rate');
      assertNear(mean(lossRuns(delays)), preset.meanBurstPackets, name === 'wifi' ? 0.15 : 0.05, 'mean burst');
    });
  }

  it('states the implied loss of each model', () => {
    assert.equal(impliedLossRate({ kind: 'none' }), 0);
    assert.equal(impliedLossRate({ kind: 'bernoulli', lossPct: 3 }), 0.03);
    assert.ok(Math.abs(impliedLossRate(LOSS_PRESETS.wifi) - 2 / 202) < 1e-12);
    assert.ok(Math.abs(impliedLossRate(LOSS_PRESETS.congested) - 2 / 22) < 1e-12);
    const partial = { kind: 'gilbert-elliott', meanGoodPackets: 30, meanBurstPackets: 10, lossInGoodPct: 1, lossInBadPct: 50 } as const;
    assert.ok(Math.abs(impliedLossRate(partial) - (0.75 * 0.01 + 0.25 * 0.5)) < 1e-12);
  });

  it('adds base delay plus jitter and never delivers before the send time', () => {
    for (const distribution of ['uniform', 'normal'] as const) {
      const emulator = new ImpairmentEmulator({ seed: 3, delayMs: 10, jitter: { distribution, ms: 30 } });
      const delays = send(emulator, 20_000).flat();
      assert.ok(delays.every((d) => d >= 0), `${distribution}: no negative delay`);
      assert.ok(delays.some((d) => d === 0), `${distribution}: the clamp at 0 is reached`);
      assert.ok(Math.max(...delays) > 35, `${distribution}: jitter spreads delays`);
    }
    const fixed = send(new ImpairmentEmulator({ seed: 3, delayMs: 25 }), 100).flat();
    assert.ok(fixed.every((d) => d === 25));
  });

  it('duplicates and reorders at plausible rates', () => {
    const emulator = new ImpairmentEmulator({ seed: 5, delayMs: 30, reorder: { pct: 3, extraDelayMs: 50 }, duplicatePct: 2 });
    const count = 50_000;
    const deliveries = Array.from({ length: count }, (_, n) => emulator.process(n, n * PACKET_INTERVAL_MS)).flat();
    const counters = emulator.counters;
    assert.equal(counters.packetsIn, count);
    assert.equal(counters.packetsDelivered, deliveries.length);
    assert.equal(deliveries.length, count + counters.packetsDuplicated);
    assertNear(counters.packetsDuplicated, 0.02 * count, 0.1, 'duplicates');
    assertNear(counters.packetsReordered, 0.03 * count, 0.1, 'reordered');
    const order = [...deliveries].sort((a, b) => a.deliverAtMs - b.deliverAtMs || a.packet - b.packet).map((d) => d.packet);
    let highest = -1;
    const overtaken = order.filter((p) => {
      const late = p < highest;
      highest = Math.max(highest, p);
      return late;
    }).length;
    assertNear(overtaken, counters.packetsReordered, 0.1, 'packets delivered after a later one');
  });

  it('rejects impossible settings with a UsageError', () => {
    const bad: ImpairmentOptions[] = [
      { seed: 1.5 },
      { seed: 1, loss: { kind: 'bernoulli', lossPct: 101 } },
      { seed: 1, loss: { kind: 'gilbert-elliott', meanGoodPackets: 0.5, meanBurstPackets: 2 } },
      { seed: 1, delayMs: -1 },
      { seed: 1, jitter: { distribution: 'normal', ms: Number.NaN } },
      { seed: 1, duplicatePct: -3 },
    ];
    for (const opts of bad) assert.throws(() => new ImpairmentEmulator(opts), { name: 'UsageError' }, JSON.stringify(opts));
  });
});
