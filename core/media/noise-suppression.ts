/**
 * Noise suppression with RNNoise (Xiph's recurrent-network denoiser), compiled to wasm by
 * `@shiguredo/rnnoise-wasm`. RNNoise works on 10 ms frames of 480 samples at 48 kHz, as
 * floats in the 16-bit range; a 20 ms pipeline frame is processed as its two halves. Besides
 * the denoised audio it estimates the probability that a frame holds speech.
 *
 * The wasm (~3.5 MB, embedded in the package's script) is loaded on first use and shared by
 * every suppressor in the process; each suppressor has its own RNNoise state.
 */
import type { DenoiseState, Rnnoise } from '@shiguredo/rnnoise-wasm';
import { InternalError, PluginError } from '../errors.js';
import type { Availability } from './codec-types.js';

/** Samples RNNoise processes at a time (10 ms at 48 kHz). */
export const RNNOISE_FRAME_SAMPLES = 480;
const REINSTALL_HINT = 'npm install @shiguredo/rnnoise-wasm';

let rnnoiseLoad: Promise<Rnnoise> | undefined;

function loadRnnoise(): Promise<Rnnoise> {
  rnnoiseLoad ??= instantiateRnnoise();
  return rnnoiseLoad;
}

/**
 * The package is an Emscripten build for browsers only: its loader throws unless it sees
 * `window` or `WorkerGlobalScope`, although nothing after that check needs either (the wasm
 * is embedded, no fetch). So WorkerGlobalScope is defined just for the synchronous part of
 * the call, where the check runs. That part also defines ~160 warning getters on globalThis
 * (`buffer`, `asm`, ...: the build has Emscripten's debug assertions on). Every global the
 * call added, the stand-in included, is removed again before anything else runs.
 */
async function instantiateRnnoise(): Promise<Rnnoise> {
  const { Rnnoise } = await import('@shiguredo/rnnoise-wasm');
  const globalsBefore = new Set(Reflect.ownKeys(globalThis));
  if (!('WorkerGlobalScope' in globalThis)) {
    Object.defineProperty(globalThis, 'WorkerGlobalScope', { value: class {}, configurable: true, writable: true });
  }
  try {
    return Rnnoise.load();
  } finally {
    for (const key of Reflect.ownKeys(globalThis)) {
      if (!globalsBefore.has(key)) Reflect.deleteProperty(globalThis, key);
    }
  }
}

export class NoiseSuppressor {
  private state: DenoiseState | undefined;
  /** RNNoise's in-place working buffer: one 10 ms frame. */
  private readonly buffer = new Float32Array(RNNOISE_FRAME_SAMPLES);
  private lastVadProbability = 0;

  private constructor(state: DenoiseState) {
    this.state = state;
  }

  /** Whether RNNoise's wasm loads here. */
  static async availability(): Promise<Availability> {
    try {
      await loadRnnoise();
      return { available: true };
    } catch (error) {
      return { available: false, reason: loadFailure(error), hint: REINSTALL_HINT };
    }
  }

  /** A suppressor with fresh RNNoise state. Throws PluginError when the wasm does not load. */
  static async create(): Promise<NoiseSuppressor> {
    let rnnoise: Rnnoise;
    try {
      rnnoise = await loadRnnoise();
    } catch (error) {
      throw new PluginError(`noise suppression: ${loadFailure(error)}`, { cause: error, suggestions: [REINSTALL_HINT] });
    }
    return new NoiseSuppressor(rnnoise.createDenoiseState());
  }

  /**
   * RNNoise's speech probability (0..1) for the last frame processed: the larger of its
   * 10 ms halves' estimates. 0 before the first frame.
   */
  get vadProbability(): number {
    return this.lastVadProbability;
  }

  /**
   * Denoise the next frame of the stream: 48 kHz, a whole number of 10 ms (480 samples),
   * normally one 20 ms frame of 960. Returns a new frame of the same length.
   */
  process(frame: Int16Array): Int16Array {
    const state = this.open();
    if (frame.length === 0 || frame.length % RNNOISE_FRAME_SAMPLES !== 0) {
      throw new InternalError(
        `noise suppression: frames must be a positive multiple of ${RNNOISE_FRAME_SAMPLES} samples, got ${frame.length}`,
      );
    }
    const output = new Int16Array(frame.length);
    let vadProbability = 0;
    for (let start = 0; start < frame.length; start += RNNOISE_FRAME_SAMPLES) {
      this.buffer.set(frame.subarray(start, start + RNNOISE_FRAME_SAMPLES));
      vadProbability = Math.max(vadProbability, state.processFrame(this.buffer));
      for (let i = 0; i < RNNOISE_FRAME_SAMPLES; i++) output[start + i] = toInt16(this.buffer[i]);
    }
    this.lastVadProbability = vadProbability;
    return output;
  }

  /** Free the RNNoise state. Safe to call twice. */
  close(): void {
    this.state?.destroy();
    this.state = undefined;
  }

  private open(): DenoiseState {
    if (this.state === undefined) throw new InternalError('noise suppression: used after close()');
    return this.state;
  }
}

function loadFailure(error: unknown): string {
  return `RNNoise (wasm) does not load: ${error instanceof Error ? error.message : String(error)}`;
}

function toInt16(x: number): number {
  return Math.max(-32768, Math.min(32767, Math.round(x)));
}
