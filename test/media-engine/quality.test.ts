import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  QualityController,
  TIERS,
  TIER_THRESHOLDS,
  selectCodec,
  tierByName,
  type ReceiverReport,
  type TierChange,
} from '../../core/media/quality.js';

const CLEAN = { lossPct: 0.5, rttMs: 80, jitterMs: 10 };

/** Feed reports every `intervalMs` from `startMs`; returns the changes they caused. */
function feed(
  controller: QualityController,
  metrics: Array<Omit<ReceiverReport, 'nowMs'>>,
  intervalMs: number,
  startMs = 0,
): TierChange[] {
  return metrics.flatMap((m, i) => controller.report({ ...m, nowMs: startMs + i * intervalMs }) ?? []);
}

const repeat = <T>(value: T, count: number): T[] => Array.from({ length: count }, () => value);

describe('quality tiers', () => {
  it('defines GOOD, DEGRADED and CATASTROPHIC with codec and FEC settings', () => {
    assert.deepEqual(
      TIERS.map((t) => [t.name, t.id]),
      [
        ['GOOD', 0],
        ['DEGRADED', 1],
        ['CATASTROPHIC', 2],
      ],
    );
    assert.deepEqual(tierByName('GOOD').codecs, [{ codec: 'opus', bitrate: 24_000, frameMs: 20 }]);
    assert.deepEqual(tierByName('DEGRADED').fec, { scheme: 'rs', k: 2, r: 4, interleaveDepth: 1 });
    assert.deepEqual(tierByName('CATASTROPHIC').fec, { scheme: 'rs', k: 5, r: 15, interleaveDepth: 1 });
  });

  it('picks Codec2 for CATASTROPHIC when available, else Opus 6 kbit/s with 60 ms frames', () => {
    const catastrophic = tierByName('CATASTROPHIC');
    assert.deepEqual(selectCodec(catastrophic, () => true), { codec: 'codec2', bitrate: 1200, frameMs: 40 });
    assert.deepEqual(selectCodec(catastrophic, (c) => c === 'opus'), {
      codec: 'opus',
      bitrate: 6000,
      frameMs: 60,
      fec: { scheme: 'rs', k: 3, r: 9, interleaveDepth: 1 },
    });
    assert.throws(() => selectCodec(catastrophic, () => false), { name: 'PluginError' });
  });
});

describe('QualityController', () => {
  it('degrades under sustained loss once it held for 2 reports and 1 s', () => {
    const controller = new QualityController();
    const changes = feed(controller, repeat({ ...CLEAN, lossPct: 8 }, 4), 500);
    assert.equal(changes.length, 1);
    assert.equal(changes[0].atMs, 1000);
    assert.equal(changes[0].from, 'GOOD');
    assert.equal(changes[0].to, 'DEGRADED');
    assert.equal(changes[0].direction, 'down');
    assert.match(changes[0].reason, /lossPct 8% >= 5%/);
    assert.equal(controller.tier.name, 'DEGRADED');
  });

  it('ignores a single bad report', () => {
    const controller = new QualityController();
    const changes = feed(controller, [CLEAN, { ...CLEAN, lossPct: 40 }, CLEAN, CLEAN], 1000);
    assert.deepEqual(changes, []);
    assert.equal(controller.tier.name, 'GOOD');
  });

  it('drops straight to CATASTROPHIC when conditions are that bad', () => {
    const controller = new QualityController();
    const changes = feed(controller, repeat({ ...CLEAN, lossPct: 30 }, 2), 1000);
    assert.deepEqual(
      changes.map((c) => [c.from, c.to]),
      [['GOOD', 'CATASTROPHIC']],
    );
  });

  it('degrades on RTT and on jitter too', () => {
    const byRtt = feed(new QualityController(), repeat({ ...CLEAN, rttMs: 900 }, 2), 1000);
    assert.equal(byRtt[0]?.to, 'CATASTROPHIC');
    assert.match(byRtt[0].reason, /rttMs 900 ms >= 800 ms/);
    const byJitter = feed(new QualityController(), repeat({ ...CLEAN, jitterMs: 90 }, 2), 1000);
    assert.equal(byJitter[0]?.to, 'DEGRADED');
  });

  it('does not flap when loss oscillates around the degrade threshold', () => {
    const controller = new QualityController();
    const around = Array.from({ length: 120 }, (_, i) => ({ ...CLEAN, lossPct: i % 4 === 3 ? 4 : 6 }));
    const changes = feed(controller, around, 500);
    assert.deepEqual(
      changes.map((c) => c.to),
      ['DEGRADED'],
      'one step down, then the hysteresis band holds it',
    );
  });

  it('does not flap when loss oscillates around the upgrade threshold', () => {
    const controller = new QualityController({ initialTier: 'DEGRADED' });
    const around = Array.from({ length: 120 }, (_, i) => ({ ...CLEAN, lossPct: i % 4 === 3 ? 2.5 : 1.5 }));
    assert.deepEqual(feed(controller, around, 1000), []);
  });

  it('climbs back one tier at a time, each after the 5 s hold', () => {
    const controller = new QualityController({ initialTier: 'CATASTROPHIC' });
    const seen: TierChange[] = [];
    const unsubscribe = controller.onTierChange((c) => seen.push(c));
    const changes = feed(controller, repeat(CLEAN, 12), 1000);
    assert.deepEqual(
      changes.map((c) => [c.from, c.to, c.atMs]),
      [
        ['CATASTROPHIC', 'DEGRADED', 5000],
        ['DEGRADED', 'GOOD', 10_000],
      ],
    );
    assert.ok(changes.every((c) => c.direction === 'up'));
    assert.deepEqual(seen, changes);
    unsubscribe();
    feed(controller, repeat({ ...CLEAN, lossPct: 50 }, 2), 1000, 20_000);
    assert.equal(seen.length, 2, 'no events after unsubscribing');
  });

  it('restarts the upgrade hold when a report is not clearly better', () => {
    const controller = new QualityController({ initialTier: 'DEGRADED' });
    const metrics = [...repeat(CLEAN, 4), { ...CLEAN, lossPct: 3 }, ...repeat(CLEAN, 6)];
    const changes = feed(controller, metrics, 1000);
    assert.deepEqual(
      changes.map((c) => c.atMs),
      [10_000],
    );
  });

  it('rejects bad thresholds and malformed reports', () => {
    const inverted = { ...TIER_THRESHOLDS, DEGRADED: { enter: TIER_THRESHOLDS.DEGRADED.exit, exit: TIER_THRESHOLDS.DEGRADED.enter } };
    assert.throws(() => new QualityController({ thresholds: inverted }), { name: 'UsageError' });
    const controller = new QualityController();
    assert.throws(() => controller.report({ ...CLEAN, lossPct: Number.NaN, nowMs: 0 }), { name: 'InternalError' });
    controller.report({ ...CLEAN, nowMs: 100 });
    assert.throws(() => controller.report({ ...CLEAN, nowMs: 50 }), { name: 'InternalError' });
  });
});
