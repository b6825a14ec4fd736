/**
 * Quality tiers and the controller that moves a call between them.
 *
 * A tier fixes the codec, bitrate, frame duration and FEC protection both sides use. The
 * controller consumes the receiver's reports (loss, RTT, jitter) and changes tier with
 * hysteresis: it degrades fast when a report crosses a tier's entry thresholds and keeps
 * doing so (`degradeMinReports` consecutive reports spanning at least `degradeHoldMs`), and
 * it upgrades one tier at a time, only after every report for `upgradeHoldMs` has been below
 * the (lower) exit thresholds. Reports in between (the hysteresis band) keep the tier and
 * restart both clocks, so a loss rate oscillating around one threshold cannot make it flap.
 *
 * Tiers, FEC defaults and thresholds live in the tables below (TIERS, TIER_THRESHOLDS) so
 * they can be tuned in one place; docs/media-engine.md explains the choices.
 */
import { InternalError, PluginError, UsageError } from '../errors.js';
import { QualityTier } from '../wire/media-header.js';

export type TierName = keyof typeof QualityTier;

export interface CodecChoice {
  /** Codec registry name. */
  codec: string;
  /** Bits/s. */
  bitrate: number;
  frameMs: number;
  /** FEC settings for this codec choice when they differ from the tier's (other frame size). */
  fec?: FecSettings;
}

export interface FecSettings {
  /** FEC registry name. */
  scheme: string;
  /** Source frames per block. */
  k: number;
  /** Repair packets per block. */
  r: number;
  /** Blocks interleaved on the wire (1 = none). */
  interleaveDepth: number;
}

export interface TierDefinition {
  name: TierName;
  /** Tier id in the media header; also the rank, 0 = best. */
  id: QualityTier;
  /** Codec settings in order of preference: the first available one is used. */
  codecs: readonly CodecChoice[];
  fec: FecSettings;
}

/** The tiers, best first. */
/**
 * The tiers. FEC settings were chosen with `wzp sweep` to meet the delivery targets with the
 * least overhead (Reed-Solomon is MDS: any K of K+R packets recover a block):
 * GOOD >= 99.5% of frames at 10% random loss, DEGRADED >= 99.5% at 25%, CATASTROPHIC >= 99%
 * at 50% and under the "congested" burst preset; mean FEC delay <= 100 ms for GOOD and
 * DEGRADED, <= 200 ms for CATASTROPHIC. docs/media-engine.md has the measured figures.
 */
export const TIERS: readonly TierDefinition[] = [
  {
    name: 'GOOD',
    id: QualityTier.GOOD,
    codecs: [{ codec: 'opus', bitrate: 24_000, frameMs: 20 }],
    // One block of 4 frames (80 ms): a lost frame is rebuilt at most 3 frames + repairs
    // later. Interleaving two blocks (depth 2) survives longer bursts but doubles that wait,
    // and the jitter buffer must cover it: over GOOD's range (under 5 % loss, where the
    // controller keeps it) depth 1 scores higher at the same overhead (docs/media-engine.md).
    fec: { scheme: 'rs', k: 4, r: 3, interleaveDepth: 1 },
  },
  {
    name: 'DEGRADED',
    id: QualityTier.DEGRADED,
    // 40 ms frames: at 6 kbit/s a 20 ms frame (15 bytes) is smaller than its headers.
    codecs: [{ codec: 'opus', bitrate: 6_000, frameMs: 40 }],
    // 2 frames = 80 ms block.
    fec: { scheme: 'rs', k: 2, r: 4, interleaveDepth: 1 },
  },
  {
    name: 'CATASTROPHIC',
    id: QualityTier.CATASTROPHIC,
    codecs: [
      { codec: 'codec2', bitrate: 1_200, frameMs: 40 },
      { codec: 'opus', bitrate: 6_000, frameMs: 60, fec: { scheme: 'rs', k: 3, r: 9, interleaveDepth: 1 } },
    ],
    // 5 x 40 ms = 200 ms block (the 60 ms Opus fallback: 3 frames = 180 ms).
    fec: { scheme: 'rs', k: 5, r: 15, interleaveDepth: 1 },
  },
];

/** The FEC settings to use with a tier's codec choice. */
export function fecFor(tier: TierDefinition, choice: CodecChoice): FecSettings {
  return choice.fec ?? tier.fec;
}

export function tierByName(name: TierName): TierDefinition {
  return TIERS[QualityTier[name]];
}

/** The first codec choice of `tier` that `isAvailable` accepts. Throws PluginError if none is. */
export function selectCodec(tier: TierDefinition, isAvailable: (codec: string) => boolean): CodecChoice {
  const choice = tier.codecs.find((c) => isAvailable(c.codec));
  if (choice === undefined) {
    throw new PluginError(`no codec available for tier ${tier.name} (wanted ${tier.codecs.map((c) => c.codec).join(' or ')})`);
  }
  return choice;
}

/** A receiver's report of the path, as the controller consumes it. */
export interface ReceiverReport {
  /** Packets lost over the report interval, percent (0-100). */
  lossPct: number;
  rttMs: number;
  jitterMs: number;
  /** When the report was received, ms on the caller's clock (non-decreasing). */
  nowMs: number;
}

export type Metric = 'lossPct' | 'rttMs' | 'jitterMs';
export type MetricLimits = Record<Metric, number>;

export interface TierThresholds {
  /** Enter this tier from a better one when ANY metric reaches (>=) its limit. */
  enter: MetricLimits;
  /** Leave this tier for the next better one only when ALL metrics are below (<) their limit. */
  exit: MetricLimits;
}

/** Thresholds of the tiers below GOOD. Each exit limit is below its entry limit: the hysteresis band. */
export const TIER_THRESHOLDS: Readonly<Record<Exclude<TierName, 'GOOD'>, TierThresholds>> = {
  DEGRADED: {
    enter: { lossPct: 5, rttMs: 400, jitterMs: 80 },
    exit: { lossPct: 2, rttMs: 250, jitterMs: 40 },
  },
  CATASTROPHIC: {
    enter: { lossPct: 15, rttMs: 800, jitterMs: 200 },
    exit: { lossPct: 8, rttMs: 500, jitterMs: 100 },
  },
};

const METRICS: readonly Metric[] = ['lossPct', 'rttMs', 'jitterMs'];
const METRIC_UNITS: Record<Metric, string> = { lossPct: '%', rttMs: ' ms', jitterMs: ' ms' };

export interface QualityControllerOptions {
  /** Default GOOD. */
  initialTier?: TierName;
  /** Default TIER_THRESHOLDS. */
  thresholds?: Readonly<Record<Exclude<TierName, 'GOOD'>, TierThresholds>>;
  /** Consecutive bad reports needed to degrade. Default 2. */
  degradeMinReports?: number;
  /** Time from the first to the latest bad report needed to degrade, ms. Default 1000. */
  degradeHoldMs?: number;
  /** Time every report must stay below the exit thresholds before one step up, ms. Default 5000. */
  upgradeHoldMs?: number;
}

export interface TierChange {
  from: TierName;
  to: TierName;
  direction: 'down' | 'up';
  atMs: number;
  /** Human-readable cause, e.g. "lossPct 12% >= 5% (enter DEGRADED) over 2 reports / 1000 ms". */
  reason: string;
  /** The report that completed the change. */
  report: ReceiverReport;
}

export type TierChangeListener = (change: TierChange) => void;

interface BadStreak {
  sinceMs: number;
  reports: number;
  /** The least severe tier demanded during the streak (the one to move to). */
  target: QualityTier;
}

export class QualityController {
  private current: QualityTier;
  private readonly thresholds: Readonly<Record<Exclude<TierName, 'GOOD'>, TierThresholds>>;
  private readonly degradeMinReports: number;
  private readonly degradeHoldMs: number;
  private readonly upgradeHoldMs: number;
  private badStreak: BadStreak | undefined;
  private goodSinceMs: number | undefined;
  private lastReportMs = Number.NEGATIVE_INFINITY;
  private readonly listeners = new Set<TierChangeListener>();

  constructor(options: QualityControllerOptions = {}) {
    this.current = QualityTier[options.initialTier ?? 'GOOD'];
    this.thresholds = options.thresholds ?? TIER_THRESHOLDS;
    this.degradeMinReports = options.degradeMinReports ?? 2;
    this.degradeHoldMs = options.degradeHoldMs ?? 1000;
    this.upgradeHoldMs = options.upgradeHoldMs ?? 5000;
    validateThresholds(this.thresholds);
    if (!(Number.isInteger(this.degradeMinReports) && this.degradeMinReports >= 1)) {
      throw new UsageError(`quality: degradeMinReports must be an integer >= 1, got ${this.degradeMinReports}`);
    }
    if (!(this.degradeHoldMs >= 0 && this.upgradeHoldMs >= 0)) {
      throw new UsageError('quality: degradeHoldMs and upgradeHoldMs must be >= 0');
    }
  }

  get tier(): TierDefinition {
    return TIERS[this.current];
  }

  /** Subscribe to tier changes; returns the unsubscribe function. */
  onTierChange(listener: TierChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Consume one receiver report; returns the tier change it caused, if any. */
  report(report: ReceiverReport): TierChange | undefined {
    this.validateReport(report);
    this.lastReportMs = report.nowMs;
    const demanded = this.demandedTier(report);
    if (demanded > this.current) return this.onWorse(report, demanded);
    this.badStreak = undefined;
    if (this.current > QualityTier.GOOD && this.clearlyBetter(report)) return this.onBetter(report);
    this.goodSinceMs = undefined;
    return undefined;
  }

  private onWorse(report: ReceiverReport, demanded: QualityTier): TierChange | undefined {
    this.goodSinceMs = undefined;
    const streak = this.badStreak;
    this.badStreak =
      streak === undefined
        ? { sinceMs: report.nowMs, reports: 1, target: demanded }
        : { sinceMs: streak.sinceMs, reports: streak.reports + 1, target: Math.min(streak.target, demanded) as QualityTier };
    const { sinceMs, reports, target } = this.badStreak;
    const heldMs = report.nowMs - sinceMs;
    if (reports < this.degradeMinReports || heldMs < this.degradeHoldMs) return undefined;
    const crossed = this.crossedEntry(report, target).join(', ');
    return this.change(target, report, `${crossed} (enter ${TIERS[target].name}) over ${reports} reports / ${heldMs} ms`);
  }

  private onBetter(report: ReceiverReport): TierChange | undefined {
    this.goodSinceMs ??= report.nowMs;
    const heldMs = report.nowMs - this.goodSinceMs;
    if (heldMs < this.upgradeHoldMs) return undefined;
    const exit = this.thresholdsOf(this.current).exit;
    const below = METRICS.map((m) => `${m} < ${exit[m]}${METRIC_UNITS[m]}`).join(', ');
    const change = this.change((this.current - 1) as QualityTier, report, `${below} (exit ${TIERS[this.current].name}) for ${heldMs} ms`);
    this.goodSinceMs = report.nowMs; // the next step up needs its own full hold
    return change;
  }

  private change(to: QualityTier, report: ReceiverReport, reason: string): TierChange {
    const from = this.current;
    this.current = to;
    this.badStreak = undefined;
    this.goodSinceMs = undefined;
    const event: TierChange = {
      from: TIERS[from].name,
      to: TIERS[to].name,
      direction: to > from ? 'down' : 'up',
      atMs: report.nowMs,
      reason,
      report,
    };
    for (const listener of this.listeners) listener(event);
    return event;
  }

  /** The worst tier whose entry thresholds this report crosses (GOOD if none). */
  private demandedTier(report: ReceiverReport): QualityTier {
    for (let tier = TIERS.length - 1; tier > QualityTier.GOOD; tier--) {
      if (this.crossedEntry(report, tier as QualityTier).length > 0) return tier as QualityTier;
    }
    return QualityTier.GOOD;
  }

  /** Descriptions of the metrics of `report` at or above `tier`'s entry limits. */
  private crossedEntry(report: ReceiverReport, tier: QualityTier): string[] {
    const enter = this.thresholdsOf(tier).enter;
    return METRICS.filter((m) => report[m] >= enter[m]).map((m) => `${m} ${report[m]}${METRIC_UNITS[m]} >= ${enter[m]}${METRIC_UNITS[m]}`);
  }

  private clearlyBetter(report: ReceiverReport): boolean {
    const exit = this.thresholdsOf(this.current).exit;
    return METRICS.every((m) => report[m] < exit[m]);
  }

  private thresholdsOf(tier: QualityTier): TierThresholds {
    const name = TIERS[tier].name;
    if (name === 'GOOD') throw new InternalError('quality: GOOD has no thresholds');
    return this.thresholds[name];
  }

  private validateReport(report: ReceiverReport): void {
    const inRange =
      report.lossPct >= 0 &&
      report.lossPct <= 100 &&
      report.rttMs >= 0 &&
      report.jitterMs >= 0 &&
      [report.rttMs, report.jitterMs, report.nowMs].every(Number.isFinite);
    if (!inRange) throw new InternalError(`quality: malformed report ${JSON.stringify(report)}`);
    if (report.nowMs < this.lastReportMs) {
      throw new InternalError(`quality: report time went backwards (${report.nowMs} < ${this.lastReportMs})`);
    }
  }
}

function validateThresholds(thresholds: Readonly<Record<Exclude<TierName, 'GOOD'>, TierThresholds>>): void {
  for (const m of METRICS) {
    const degraded = thresholds.DEGRADED;
    const catastrophic = thresholds.CATASTROPHIC;
    if (!(degraded.exit[m] < degraded.enter[m] && catastrophic.exit[m] < catastrophic.enter[m])) {
      throw new UsageError(`quality: every exit threshold must be below its entry threshold (${m})`);
    }
    if (!(degraded.enter[m] <= catastrophic.enter[m] && degraded.exit[m] <= catastrophic.exit[m])) {
      throw new UsageError(`quality: CATASTROPHIC thresholds must not be below DEGRADED ones (${m})`);
    }
  }
}
