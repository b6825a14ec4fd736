/**
 * A deterministic network impairment emulator: loss (Bernoulli or Gilbert-Elliott bursts),
 * delay with jitter, reordering and duplication, applied packet by packet.
 *
 * It holds no timers and no sockets: `process()` says when (and how many times) a packet is
 * delivered and the caller does the delivering, either in a simulated-time pipeline (the
 * sweep) or from a real UDP proxy that sets timers for `deliverAtMs`. Every random draw
 * comes from a generator seeded by `seed`, one independent stream per impairment kind, so a
 * run is reproducible and, for example, the loss pattern does not change when only the jitter
 * settings do.
 */
import { UsageError } from '../errors.js';
import { Prng } from '../media/prng.js';

/** Independent loss: every packet is lost with the same probability. */
export interface BernoulliLoss {
  kind: 'bernoulli';
  lossPct: number;
}

/**
 * Gilbert-Elliott burst loss: a two-state Markov chain stepped once per packet. Sojourn
 * lengths are geometric, so `meanGoodPackets` and `meanBurstPackets` (both >= 1) fix the
 * transition probabilities p(good->bad) = 1/meanGoodPackets, p(bad->good) = 1/meanBurstPackets.
 */
export interface GilbertElliottLoss {
  kind: 'gilbert-elliott';
  meanGoodPackets: number;
  meanBurstPackets: number;
  /** Loss probability in the good state, percent. Default 0. */
  lossInGoodPct?: number;
  /** Loss probability in the bad state, percent. Default 100. */
  lossInBadPct?: number;
}

export type LossModel = { kind: 'none' } | BernoulliLoss | GilbertElliottLoss;

/** Named Gilbert-Elliott settings (bad state always loses, good state never does). */
export const LOSS_PRESETS = {
  /** Occasional short bursts, as on a busy Wi-Fi link: implied loss 2/202 = 0.99 %. */
  wifi: { kind: 'gilbert-elliott', meanGoodPackets: 200, meanBurstPackets: 2 },
  /** A congested bottleneck dropping pairs often: implied loss 2/22 = 9.09 %. */
  congested: { kind: 'gilbert-elliott', meanGoodPackets: 20, meanBurstPackets: 2 },
} as const satisfies Record<string, GilbertElliottLoss>;

export type LossPresetName = keyof typeof LOSS_PRESETS;

export interface JitterModel {
  /** `uniform`: offset uniform in [-ms, +ms]. `normal`: offset normal with sd = ms. */
  distribution: 'uniform' | 'normal';
  ms: number;
}

export interface ImpairmentOptions {
  /** Seed of every random draw; the same seed and inputs give the same output. */
  seed: number;
  loss?: LossModel;
  /** Base one-way delay added to every packet, ms. Default 0. */
  delayMs?: number;
  /** Random offset added to the base delay; the total delay is clamped at 0. */
  jitter?: JitterModel;
  /** Hold back a fraction of packets by an extra delay so later packets overtake them. */
  reorder?: { pct: number; extraDelayMs: number };
  /** Probability (percent) that a delivered packet is delivered a second time. */
  duplicatePct?: number;
}

export interface Delivery<T> {
  packet: T;
  deliverAtMs: number;
}

export interface ImpairmentCounters {
  /** Packets given to process(). */
  packetsIn: number;
  packetsLost: number;
  /** Deliveries made, duplicates included. */
  packetsDelivered: number;
  /** Extra copies delivered. */
  packetsDuplicated: number;
  /** Packets held back by the reorder extra delay. */
  packetsReordered: number;
}

/** Long-run loss rate (0..1) a loss model implies: the stationary mix of its states. */
export function impliedLossRate(model: LossModel): number {
  switch (model.kind) {
    case 'none':
      return 0;
    case 'bernoulli':
      return model.lossPct / 100;
    case 'gilbert-elliott': {
      const { pGoodToBad, pBadToGood, lossInGood, lossInBad } = gilbertElliottParams(model);
      const badShare = pGoodToBad / (pGoodToBad + pBadToGood);
      return (1 - badShare) * lossInGood + badShare * lossInBad;
    }
  }
}

interface GilbertElliottParams {
  pGoodToBad: number;
  pBadToGood: number;
  lossInGood: number;
  lossInBad: number;
}

function gilbertElliottParams(model: GilbertElliottLoss): GilbertElliottParams {
  return {
    pGoodToBad: 1 / model.meanGoodPackets,
    pBadToGood: 1 / model.meanBurstPackets,
    lossInGood: (model.lossInGoodPct ?? 0) / 100,
    lossInBad: (model.lossInBadPct ?? 100) / 100,
  };
}

/** Decides, packet by packet, whether a packet is lost. */
interface LossProcess {
  lose(): boolean;
}

class BernoulliProcess implements LossProcess {
  constructor(
    private readonly rng: Prng,
    private readonly p: number,
  ) {}

  lose(): boolean {
    return this.rng.chance(this.p);
  }
}

class GilbertElliottProcess implements LossProcess {
  private bad: boolean;

  constructor(
    private readonly rng: Prng,
    private readonly params: GilbertElliottParams,
  ) {
    // Start in the stationary distribution so short runs are not biased toward `good`.
    this.bad = rng.chance(params.pGoodToBad / (params.pGoodToBad + params.pBadToGood));
  }

  lose(): boolean {
    const lost = this.rng.chance(this.bad ? this.params.lossInBad : this.params.lossInGood);
    this.bad = this.rng.chance(this.bad ? 1 - this.params.pBadToGood : this.params.pGoodToBad);
    return lost;
  }
}

function lossProcess(model: LossModel, rng: Prng): LossProcess | undefined {
  switch (model.kind) {
    case 'none':
      return undefined;
    case 'bernoulli':
      return new BernoulliProcess(rng, model.lossPct / 100);
    case 'gilbert-elliott':
      return new GilbertElliottProcess(rng, gilbertElliottParams(model));
  }
}

/** Random streams, one per impairment kind (see the module comment). */
const STREAM_LOSS = 0;
const STREAM_DELAY = 1;
const STREAM_REORDER = 2;
const STREAM_DUPLICATE = 3;

export class ImpairmentEmulator {
  private readonly loss: LossProcess | undefined;
  private readonly delayRng: Prng;
  private readonly reorderRng: Prng;
  private readonly duplicateRng: Prng;
  private readonly counts: ImpairmentCounters = {
    packetsIn: 0,
    packetsLost: 0,
    packetsDelivered: 0,
    packetsDuplicated: 0,
    packetsReordered: 0,
  };

  constructor(private readonly options: ImpairmentOptions) {
    validateOptions(options);
    this.loss = lossProcess(options.loss ?? { kind: 'none' }, Prng.derive(options.seed, STREAM_LOSS));
    this.delayRng = Prng.derive(options.seed, STREAM_DELAY);
    this.reorderRng = Prng.derive(options.seed, STREAM_REORDER);
    this.duplicateRng = Prng.derive(options.seed, STREAM_DUPLICATE);
  }

  /** The long-run loss rate (0..1) of the configured loss model. */
  get impliedLossRate(): number {
    return impliedLossRate(this.options.loss ?? { kind: 'none' });
  }

  /** A snapshot of the counters. */
  get counters(): ImpairmentCounters {
    return { ...this.counts };
  }

  /**
   * Impair one packet sent at `sendTimeMs`: returns no delivery (lost), one, or two (the
   * second is a duplicate; both carry the same `packet` reference). Deliveries are not
   * sorted: a caller delivering in time order must order them itself.
   */
  process<T>(packet: T, sendTimeMs: number): Array<Delivery<T>> {
    this.counts.packetsIn++;
    if (this.loss?.lose()) {
      this.counts.packetsLost++;
      return [];
    }
    const deliveries = [{ packet, deliverAtMs: sendTimeMs + this.delayOnce() + this.reorderDelay() }];
    if (this.options.duplicatePct !== undefined && this.duplicateRng.chance(this.options.duplicatePct / 100)) {
      this.counts.packetsDuplicated++;
      deliveries.push({ packet, deliverAtMs: sendTimeMs + this.delayOnce() });
    }
    this.counts.packetsDelivered += deliveries.length;
    return deliveries;
  }

  /** Base delay plus a jitter draw, never negative. */
  private delayOnce(): number {
    const base = this.options.delayMs ?? 0;
    const jitter = this.options.jitter;
    if (jitter === undefined) return base;
    const offset =
      jitter.distribution === 'uniform' ? this.delayRng.uniform(-jitter.ms, jitter.ms) : this.delayRng.normal(0, jitter.ms);
    return Math.max(0, base + offset);
  }

  private reorderDelay(): number {
    const reorder = this.options.reorder;
    if (reorder === undefined || !this.reorderRng.chance(reorder.pct / 100)) return 0;
    this.counts.packetsReordered++;
    return reorder.extraDelayMs;
  }
}

function validateOptions(options: ImpairmentOptions): void {
  if (!Number.isSafeInteger(options.seed)) fail(`seed must be an integer, got ${options.seed}`);
  validateLoss(options.loss ?? { kind: 'none' });
  if (options.delayMs !== undefined) requireNonNegative('delayMs', options.delayMs);
  if (options.jitter !== undefined) requireNonNegative('jitter ms', options.jitter.ms);
  if (options.reorder !== undefined) {
    requirePercent('reorder pct', options.reorder.pct);
    requireNonNegative('reorder extraDelayMs', options.reorder.extraDelayMs);
  }
  if (options.duplicatePct !== undefined) requirePercent('duplicatePct', options.duplicatePct);
}

function validateLoss(model: LossModel): void {
  switch (model.kind) {
    case 'none':
      return;
    case 'bernoulli':
      requirePercent('lossPct', model.lossPct);
      return;
    case 'gilbert-elliott':
      if (!(model.meanGoodPackets >= 1)) fail(`meanGoodPackets must be >= 1, got ${model.meanGoodPackets}`);
      if (!(model.meanBurstPackets >= 1)) fail(`meanBurstPackets must be >= 1, got ${model.meanBurstPackets}`);
      if (model.lossInGoodPct !== undefined) requirePercent('lossInGoodPct', model.lossInGoodPct);
      if (model.lossInBadPct !== undefined) requirePercent('lossInBadPct', model.lossInBadPct);
      return;
    default:
      fail(`unknown loss model ${(model as { kind: unknown }).kind}`);
  }
}

function requireNonNegative(what: string, value: number): void {
  if (!(Number.isFinite(value) && value >= 0)) fail(`${what} must be a finite number >= 0, got ${value}`);
}

function requirePercent(what: string, value: number): void {
  if (!(value >= 0 && value <= 100)) fail(`${what} must be within 0-100, got ${value}`);
}

function fail(message: string): never {
  throw new UsageError(`impairment: ${message}`);
}
