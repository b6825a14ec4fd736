/**
 * Where a call's audio comes from and goes to, at the pipeline format (48 kHz mono 16-bit):
 * a generated tone, a WAV file (any rate and channel count, resampled), or a device (see
 * ./devices.ts); and sinks that mix into a WAV recording and/or a speaker.
 */
import { PIPELINE_SAMPLE_RATE } from '../media/codec-types.js';
import { createResampler, type Resampler } from '../media/resample.js';
import { readWavFile } from '../media/wav.js';

export interface FrameSource {
  /** Exactly `samples` samples (zero-filled past the end). */
  read(samples: number): Int16Array;
  /** True once a finite source has delivered everything. */
  readonly ended: boolean;
  close?(): Promise<void> | void;
}

export interface FrameSink {
  write(pcm: Int16Array): void;
  close(): Promise<void> | void;
}

/** A continuous sine tone. */
export class ToneSource implements FrameSource {
  readonly ended = false;
  private phase = 0;
  constructor(
    readonly frequencyHz: number,
    readonly amplitude = 0.3,
  ) {}
  read(samples: number): Int16Array {
    const out = new Int16Array(samples);
    const step = (2 * Math.PI * this.frequencyHz) / PIPELINE_SAMPLE_RATE;
    for (let i = 0; i < samples; i++) {
      out[i] = Math.round(Math.sin(this.phase) * this.amplitude * 32767);
      this.phase += step;
    }
    this.phase %= 2 * Math.PI;
    return out;
  }
}

/**
 * Audio from a WAV file, resampled to 48 kHz mono as it is read (20 ms of the file at a time),
 * so a long file at 44.1 kHz does not hold up the call's start while all of it converts.
 */
export class FileSource implements FrameSource {
  private readonly input: Int16Array;
  private readonly inputRate: number;
  private readonly resampler: Resampler | undefined;
  private readonly chunkSamples: number;
  private inputOffset = 0;
  /** Converted samples not read yet: pending[pendingOffset..]. */
  private pending: Int16Array = new Int16Array(0);
  private pendingOffset = 0;
  constructor(readonly path: string) {
    const wav = readWavFile(path);
    this.input = wav.samples;
    this.inputRate = wav.sampleRate;
    this.resampler = wav.sampleRate === PIPELINE_SAMPLE_RATE ? undefined : createResampler(wav.sampleRate, PIPELINE_SAMPLE_RATE);
    this.chunkSamples = Math.max(1, Math.round(wav.sampleRate / 50));
  }
  get ended(): boolean {
    return this.inputOffset >= this.input.length && this.pendingOffset >= this.pending.length;
  }
  get durationMs(): number {
    return (this.input.length / this.inputRate) * 1000;
  }
  read(samples: number): Int16Array {
    const out = new Int16Array(samples);
    let filled = 0;
    while (filled < samples) {
      if (this.pendingOffset >= this.pending.length) {
        if (this.inputOffset >= this.input.length) break;
        const chunk = this.input.subarray(this.inputOffset, this.inputOffset + this.chunkSamples);
        this.inputOffset += chunk.length;
        this.pending = this.resampler ? this.resampler.process(chunk) : chunk;
        this.pendingOffset = 0;
        continue;
      }
      const take = Math.min(samples - filled, this.pending.length - this.pendingOffset);
      out.set(this.pending.subarray(this.pendingOffset, this.pendingOffset + take), filled);
      filled += take;
      this.pendingOffset += take;
    }
    return out;
  }
}

/** Silence (a receive-only member). */
export class SilenceSource implements FrameSource {
  readonly ended = false;
  read(samples: number): Int16Array {
    return new Int16Array(samples);
  }
}

/** Writes to several sinks. */
export class TeeSink implements FrameSink {
  constructor(private readonly sinks: FrameSink[]) {}
  write(pcm: Int16Array): void {
    for (const s of this.sinks) s.write(pcm);
  }
  async close(): Promise<void> {
    for (const s of this.sinks) await s.close();
  }
}

/** Sum several streams' samples into one, with saturation. */
export function mix(into: Int32Array, pcm: Int16Array): void {
  for (let i = 0; i < into.length && i < pcm.length; i++) into[i] += pcm[i];
}

export function saturate(mixed: Int32Array): Int16Array {
  const out = new Int16Array(mixed.length);
  for (let i = 0; i < mixed.length; i++) out[i] = Math.max(-32768, Math.min(32767, mixed[i]));
  return out;
}
