/**
 * Energy-based voice activity detection with an adaptive noise floor and hangover.
 *
 * Per frame (20 ms at 48 kHz by default):
 *  1. energy = mean square of the frame with its DC offset removed, in dBFS (0 dBFS is a
 *     full-scale square wave; digital silence reads as SILENCE_DB).
 *  2. The noise floor tracks the minimum of the energy: it drops at once to a quieter frame
 *     and creeps up by `noiseRiseDbPerSecond` otherwise, so it follows a louder background
 *     within seconds while speech, which keeps dipping between syllables, cannot drag it up.
 *     It never goes below `minNoiseFloorDb` (a muted microphone must not make the next
 *     hiss look like speech for long). The first frame sets it: calls start in silence.
 *  3. A frame is speech when its energy exceeds the floor by `marginDb`. After the last
 *     speech frame, frames stay speech for `hangoverMs` so word endings and short pauses are
 *     not clipped.
 *
 * Deterministic: the same frames give the same decisions.
 */
import { InternalError } from '../errors.js';
import { PIPELINE_SAMPLE_RATE } from './codec-types.js';

/** Energy reported for digital silence (and the lowest energy ever reported), dBFS. */
export const SILENCE_DB = -100;
const FULL_SCALE = 32768;

export interface VadOptions {
  /** Samples per frame at 48 kHz (default 960 = 20 ms). */
  frameSamples?: number;
  /** How far above the noise floor a frame must be to count as speech, dB (default 9). */
  marginDb?: number;
  /** How long frames stay speech after the last loud one, ms (default 200). */
  hangoverMs?: number;
  /** How fast the noise floor rises towards louder frames, dB/s (default 5). */
  noiseRiseDbPerSecond?: number;
  /** The noise floor never drops below this, dBFS (default -70). */
  minNoiseFloorDb?: number;
}

export interface VadDecision {
  /** Whether the frame holds (or, in hangover, follows) speech. */
  speech: boolean;
  /** Frame energy (DC removed), dBFS. */
  energyDb: number;
  /** The noise floor after this frame, dBFS. */
  noiseFloorDb: number;
}

const DEFAULTS: Required<VadOptions> = {
  frameSamples: 960,
  marginDb: 9,
  hangoverMs: 200,
  noiseRiseDbPerSecond: 5,
  minNoiseFloorDb: -70,
};

export class VoiceActivityDetector {
  readonly frameSamples: number;
  private readonly marginDb: number;
  private readonly minNoiseFloorDb: number;
  private readonly hangoverFrames: number;
  private readonly noiseRisePerFrameDb: number;
  private noiseFloorDb: number | undefined;
  /** Frames of hangover left after the last frame above the threshold. */
  private hangoverLeft = 0;

  constructor(options: VadOptions = {}) {
    const settings = { ...DEFAULTS, ...options };
    checkOptions(settings);
    const frameMs = (settings.frameSamples * 1000) / PIPELINE_SAMPLE_RATE;
    this.frameSamples = settings.frameSamples;
    this.marginDb = settings.marginDb;
    this.minNoiseFloorDb = settings.minNoiseFloorDb;
    this.hangoverFrames = Math.round(settings.hangoverMs / frameMs);
    this.noiseRisePerFrameDb = (settings.noiseRiseDbPerSecond * frameMs) / 1000;
  }

  /** Classify the next frame of the stream (exactly `frameSamples` samples). */
  process(frame: Int16Array): VadDecision {
    if (frame.length !== this.frameSamples) {
      throw new InternalError(`vad: expected frames of ${this.frameSamples} samples, got ${frame.length}`);
    }
    const energyDb = frameEnergyDb(frame);
    const noiseFloorDb = this.trackNoiseFloor(energyDb);
    if (energyDb > noiseFloorDb + this.marginDb) {
      this.hangoverLeft = this.hangoverFrames;
      return { speech: true, energyDb, noiseFloorDb };
    }
    const inHangover = this.hangoverLeft > 0;
    if (inHangover) this.hangoverLeft--;
    return { speech: inHangover, energyDb, noiseFloorDb };
  }

  /** Forget the stream: the next frame starts a new one. */
  reset(): void {
    this.noiseFloorDb = undefined;
    this.hangoverLeft = 0;
  }

  private trackNoiseFloor(energyDb: number): number {
    const previous = this.noiseFloorDb ?? energyDb;
    const tracked = energyDb < previous ? energyDb : Math.min(energyDb, previous + this.noiseRisePerFrameDb);
    this.noiseFloorDb = Math.max(this.minNoiseFloorDb, tracked);
    return this.noiseFloorDb;
  }
}

/** Mean square of the frame with its mean removed, in dBFS, never below SILENCE_DB. */
export function frameEnergyDb(frame: Int16Array): number {
  if (frame.length === 0) return SILENCE_DB;
  let sum = 0;
  for (let i = 0; i < frame.length; i++) sum += frame[i];
  const mean = sum / frame.length;
  let energy = 0;
  for (let i = 0; i < frame.length; i++) energy += (frame[i] - mean) ** 2;
  return powerToDb(energy / frame.length);
}

/** A mean-square power of 16-bit samples in dBFS, never below SILENCE_DB. */
export function powerToDb(power: number): number {
  return power > 0 ? Math.max(SILENCE_DB, 10 * Math.log10(power / (FULL_SCALE * FULL_SCALE))) : SILENCE_DB;
}

/** A level in dBFS as the mean-square power of 16-bit samples (the inverse of powerToDb). */
export function dbToPower(db: number): number {
  return FULL_SCALE * FULL_SCALE * 10 ** (db / 10);
}

function checkOptions(settings: Required<VadOptions>): void {
  const { frameSamples, marginDb, hangoverMs, noiseRiseDbPerSecond, minNoiseFloorDb } = settings;
  if (!Number.isInteger(frameSamples) || frameSamples <= 0) {
    throw new InternalError(`vad: frameSamples must be a positive integer, got ${frameSamples}`);
  }
  for (const [name, value] of Object.entries({ marginDb, hangoverMs, noiseRiseDbPerSecond })) {
    if (!(Number.isFinite(value) && value >= 0)) throw new InternalError(`vad: ${name} must be a finite number >= 0, got ${value}`);
  }
  if (!(Number.isFinite(minNoiseFloorDb) && minNoiseFloorDb >= SILENCE_DB && minNoiseFloorDb <= 0)) {
    throw new InternalError(`vad: minNoiseFloorDb must be within ${SILENCE_DB}..0 dBFS, got ${minNoiseFloorDb}`);
  }
}
