/**
 * `wzp sweep`: run the media pipeline over a matrix of network conditions, tiers and FEC
 * schemes in simulated time, and report delivery, concealment, delay, MOS, SNR and bitrate,
 * with the targets checked where a row matches their conditions.
 */
import { UsageError } from '../../core/errors.js';
import { PIPELINE_SAMPLE_RATE } from '../../core/media/codec-types.js';
import { TIERS, type TierName } from '../../core/media/quality.js';
import { tierStreamSettings } from '../../core/media/stream-settings.js';
import { createResampler } from '../../core/media/resample.js';
import { NoiseSuppressor } from '../../core/media/noise-suppression.js';
import { speechLike } from '../../core/media/speech.js';
import { runScenario, type SweepResult, type SweepScenario } from '../../core/media/sweep.js';
import { readWavFile } from '../../core/media/wav.js';
import { LOSS_PRESETS, type LossModel, type LossPresetName } from '../../core/net/impairment.js';
import type { Registries } from '../../core/registry.js';

/** 2: the duplicate top-level schemaVersion is gone (it is meta.schemaVersion, as in every report). */
export const SWEEP_SCHEMA_VERSION = 2;

export interface SweepRequest {
  lossPct: number[];
  bursts: string[];
  jitterMs: number[];
  tiers: string[];
  /** FEC scheme names replacing each tier's own (keeping its K, R, depth). */
  fec?: string[];
  /** Codec replacing each tier's own (its frame size must be supported). */
  codec?: string;
  k?: number;
  r?: number;
  depth?: number;
  durationMs: number;
  delayMs: number;
  input?: string;
  seed: number;
  /** Voice activity detection with comfort noise. */
  vad?: boolean;
  /** RNNoise noise suppression before the codec. */
  noiseSuppression?: boolean;
  registries: Registries;
  /** Ctrl-C: stop after the current scenario and report what ran. */
  signal?: AbortSignal;
  onScenario?(index: number, total: number, label: string): void;
}

export interface TargetCheck {
  tier: string;
  fec: string;
  condition: string;
  requirement: string;
  actual: string;
  met: boolean;
}

export interface SweepReport {
  material: { source: string; durationMs: number };
  seed: number;
  delayMs: number;
  results: SweepResult[];
  targets: TargetCheck[];
  /** True when Ctrl-C stopped the sweep before every scenario ran. */
  interrupted: boolean;
}

interface LossCase {
  label: string;
  model: LossModel;
}

export async function sweep(req: SweepRequest): Promise<SweepReport> {
  const { source, label } = loadMaterial(req);
  const losses = lossCases(req);
  const scenarios: SweepScenario[] = [];
  for (const tierName of req.tiers) {
    const tier = TIERS.find((t) => t.name === tierName.toUpperCase());
    if (!tier) throw new UsageError(`unknown tier "${tierName}"`, { suggestions: ['tiers: GOOD, DEGRADED, CATASTROPHIC'] });
    for (const fecName of req.fec ?? [undefined]) {
      const settings = tierStreamSettings(tier.name, req.registries, { codec: req.codec, fec: fecName, k: req.k, r: req.r, depth: req.depth });
      for (const loss of losses) {
        for (const jitterMs of req.jitterMs) {
          scenarios.push({
            tierName: tier.name,
            ...settings,
            loss: loss.model,
            lossLabel: loss.label,
            delayMs: req.delayMs,
            jitterMs,
            seed: req.seed,
            vad: req.vad,
          });
        }
      }
    }
  }
  const results: SweepResult[] = [];
  for (const [i, s] of scenarios.entries()) {
    if (req.signal?.aborted) break;
    req.onScenario?.(i, scenarios.length, `${s.tierName} ${s.codec.name} ${s.fec.name} loss ${s.lossLabel} jitter ${s.jitterMs} ms`);
    const suppressor = req.noiseSuppression ? await NoiseSuppressor.create() : undefined;
    try {
      results.push(runScenario({ ...s, noiseSuppressor: suppressor }, source));
    } finally {
      suppressor?.close();
    }
    // Let progress rendering and signals run between scenarios.
    await new Promise((r) => setImmediate(r));
  }
  return {
    material: { source: label, durationMs: Math.round((source.length / PIPELINE_SAMPLE_RATE) * 1000) },
    seed: req.seed,
    delayMs: req.delayMs,
    results,
    targets: checkTargets(results),
    interrupted: results.length < scenarios.length,
  };
}

function loadMaterial(req: SweepRequest): { source: Int16Array; label: string } {
  if (!req.input) return { source: speechLike(req.durationMs, req.seed), label: 'generated speech-like signal' };
  const wav = readWavFile(req.input);
  let samples = wav.samples;
  if (wav.sampleRate !== PIPELINE_SAMPLE_RATE) samples = createResampler(wav.sampleRate, PIPELINE_SAMPLE_RATE).process(samples);
  const max = Math.round((req.durationMs * PIPELINE_SAMPLE_RATE) / 1000);
  return { source: samples.subarray(0, max), label: req.input };
}

/**
 * A comma-separated list of numbers from a flag (`--loss 0,10,25`): every item must be a
 * number within [min, max]; an empty item (`10,,20`), a word or a value out of range is a
 * UsageError naming the flag and the value. An empty list only with `allowEmpty`.
 */
export function numberList(flag: string, text: string, range: { min: number; max: number; what: string; allowEmpty?: boolean }): number[] {
  if (text.trim() === '') {
    if (range.allowEmpty) return [];
    throw new UsageError(`${flag} "${text}": give one or more numbers, comma-separated`);
  }
  const items = text.split(',').map((x) => x.trim());
  return items.map((item) => {
    const value = /^[+-]?(\d+\.?\d*|\.\d+)$/.test(item) ? Number(item) : Number.NaN;
    if (item === '') throw new UsageError(`${flag} "${text}" has an empty item: give numbers separated by single commas`);
    if (Number.isNaN(value)) throw new UsageError(`${flag} "${text}": "${item}" is not a number`);
    if (value < range.min || value > range.max) throw new UsageError(`${flag} ${item}: ${range.what}`);
    return value;
  });
}

function lossCases(req: SweepRequest): LossCase[] {
  const cases: LossCase[] = req.lossPct.map((p) => {
    if (!(p >= 0 && p < 100)) throw new UsageError(`--loss ${p}: a loss rate is a percentage 0-99`);
    return { label: `${p}%`, model: p === 0 ? { kind: 'none' } : { kind: 'bernoulli', lossPct: p } };
  });
  for (const b of req.bursts) {
    if (b === 'none') continue;
    if (!(b in LOSS_PRESETS)) {
      throw new UsageError(`unknown burst preset "${b}"`, { suggestions: [`presets: ${Object.keys(LOSS_PRESETS).join(', ')}`] });
    }
    cases.push({ label: b, model: LOSS_PRESETS[b as LossPresetName] });
  }
  if (cases.length === 0) throw new UsageError('nothing to sweep: give --loss and/or --burst');
  return cases;
}

/** The media-engine targets, checked on the rows whose conditions they name. */
const TARGETS: { tier: TierName; loss: string; minDelivered: number; maxFecDelayMs: number }[] = [
  { tier: 'GOOD', loss: '10%', minDelivered: 99.5, maxFecDelayMs: 100 },
  { tier: 'DEGRADED', loss: '25%', minDelivered: 99.5, maxFecDelayMs: 100 },
  { tier: 'CATASTROPHIC', loss: '50%', minDelivered: 99, maxFecDelayMs: 200 },
  { tier: 'CATASTROPHIC', loss: 'congested', minDelivered: 99, maxFecDelayMs: 200 },
];

function checkTargets(results: SweepResult[]): TargetCheck[] {
  const checks: TargetCheck[] = [];
  for (const t of TARGETS) {
    for (const r of results.filter((x) => x.tier === t.tier && x.loss === t.loss && x.jitterMs === 0)) {
      checks.push({
        tier: r.tier,
        fec: r.fec,
        condition: `loss ${t.loss}`,
        requirement: `delivered >= ${t.minDelivered}%, FEC delay <= ${t.maxFecDelayMs} ms`,
        actual: `delivered ${r.deliveredPct}%, FEC delay ${r.fecDelayMs} ms`,
        met: r.deliveredPct >= t.minDelivered && r.fecDelayMs <= t.maxFecDelayMs,
      });
    }
  }
  return checks;
}
