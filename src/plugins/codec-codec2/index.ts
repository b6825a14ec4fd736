/**
 * Built-in codec plugin: Codec2 at 1200 bit/s, the codec of the CATASTROPHIC quality tier.
 *
 * libcodec2 (Debian `libcodec2-1.0`) is called through koffi's FFI, so nothing is compiled.
 * Codec2 1200 is an 8 kHz vocoder: one codec2 frame is 40 ms (320 samples) in 6 bytes. The
 * pipeline's 48 kHz PCM is resampled to 8 kHz on encode and back on decode, with resamplers
 * that keep their state per codec instance. A payload carries one codec2 frame (40 ms) or
 * two (80 ms), concatenated in time order.
 *
 * koffi and the shared library are loaded lazily on first use: a machine without libcodec2
 * sees the codec as unavailable (with the apt hint) and the CLI still starts.
 */
import { createRequire } from 'node:module';
import {
  createResampler,
  DecodeError,
  frameSamplesFor,
  PIPELINE_SAMPLE_RATE,
  PluginError,
  type Availability,
  type Codec,
  type CodecFactory,
  type CodecOptions,
  type HookContribution,
  type Resampler,
} from '../../../core/plugin.js';

type Koffi = typeof import('koffi');
type LibraryHandle = ReturnType<Koffi['load']>;
/** A `struct CODEC2 *` as koffi hands it out: opaque to JavaScript. */
type Codec2Handle = object;

/** The libcodec2 functions this plugin calls (codec2.h). */
interface Codec2Library {
  create(mode: number): Codec2Handle | null;
  destroy(handle: Codec2Handle): void;
  samplesPerFrame(handle: Codec2Handle): number;
  bytesPerFrame(handle: Codec2Handle): number;
  encode(handle: Codec2Handle, bits: Uint8Array, speech: Int16Array): void;
  decode(handle: Codec2Handle, speech: Int16Array, bits: Uint8Array): void;
}

const NAME = 'codec2';
/** Tried in order: Debian's runtime package ships only the versioned name. */
const LIBRARY_NAMES: readonly string[] = ['libcodec2.so.1.0', 'libcodec2.so'];
const INSTALL_HINT = 'apt-get install libcodec2-1.0';
const KOFFI_HINT = 'npm rebuild koffi';

/** CODEC2_MODE_1200 in codec2.h (3200 = 0, 2400 = 1, 1600 = 2, 1400 = 3, 1300 = 4, 1200 = 5). */
const CODEC2_MODE_1200 = 5;
const CODEC2_SAMPLE_RATE = 8_000;
const CODEC2_FRAME_MS = 40;
const CODEC2_FRAME_SAMPLES = 320;
const CODEC2_FRAME_BYTES = 6;
const BITRATE = (CODEC2_FRAME_BYTES * 8 * 1000) / CODEC2_FRAME_MS;
const FRAME_DURATIONS_MS: readonly number[] = [CODEC2_FRAME_MS, 2 * CODEC2_FRAME_MS];
/** Concealment fades to silence over this much consecutive loss. */
const CONCEAL_FADE_MS = 80;
const CONCEAL_FADE_SAMPLES = (CODEC2_SAMPLE_RATE * CONCEAL_FADE_MS) / 1000;

type LoadResult = { ok: true; library: Codec2Library } | { ok: false; reason: string; hint: string };
let loadResult: LoadResult | undefined;

function loadCodec2(): LoadResult {
  loadResult ??= tryLoadCodec2();
  return loadResult;
}

function tryLoadCodec2(): LoadResult {
  let koffi: Koffi;
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi;
  } catch (error) {
    return { ok: false, reason: `the koffi FFI module does not load: ${messageOf(error)}`, hint: KOFFI_HINT };
  }
  const handle = openLibrary(koffi);
  if (handle === undefined) return { ok: false, reason: 'libcodec2 not found', hint: INSTALL_HINT };
  let library: Codec2Library;
  try {
    library = bindLibrary(handle);
  } catch (error) {
    return { ok: false, reason: `libcodec2 lacks a needed function: ${messageOf(error)}`, hint: INSTALL_HINT };
  }
  const mismatch = checkMode1200(library);
  if (mismatch !== undefined) return { ok: false, reason: mismatch, hint: INSTALL_HINT };
  return { ok: true, library };
}

function openLibrary(koffi: Koffi): LibraryHandle | undefined {
  for (const name of LIBRARY_NAMES) {
    try {
      return koffi.load(name);
    } catch {
      // Not under this name: try the next one.
    }
  }
  return undefined;
}

function bindLibrary(handle: LibraryHandle): Codec2Library {
  return {
    create: handle.func('void *codec2_create(int mode)'),
    destroy: handle.func('void codec2_destroy(void *codec2)'),
    samplesPerFrame: handle.func('int codec2_samples_per_frame(void *codec2)'),
    bytesPerFrame: handle.func('int codec2_bytes_per_frame(void *codec2)'),
    encode: handle.func('void codec2_encode(void *codec2, _Out_ uint8_t *bits, const int16_t *speech)'),
    decode: handle.func('void codec2_decode(void *codec2, _Out_ int16_t *speech, const uint8_t *bits)'),
  };
}

/** The mode number is only a header constant: make sure this library agrees on what it means. */
function checkMode1200(library: Codec2Library): string | undefined {
  const handle = library.create(CODEC2_MODE_1200);
  if (handle === null) return `libcodec2 does not support mode ${CODEC2_MODE_1200} (1200 bit/s)`;
  try {
    const samples = library.samplesPerFrame(handle);
    const bytes = library.bytesPerFrame(handle);
    if (samples !== CODEC2_FRAME_SAMPLES || bytes !== CODEC2_FRAME_BYTES) {
      return (
        `libcodec2 mode ${CODEC2_MODE_1200} has ${samples} samples and ${bytes} bytes per frame, ` +
        `expected ${CODEC2_FRAME_SAMPLES} and ${CODEC2_FRAME_BYTES} (1200 bit/s)`
      );
    }
    return undefined;
  } finally {
    library.destroy(handle);
  }
}

function availability(): Availability {
  const loaded = loadCodec2();
  return loaded.ok ? { available: true } : { available: false, reason: loaded.reason, hint: loaded.hint };
}

class Codec2Codec implements Codec {
  readonly name = NAME;
  readonly frameSamples: number;
  /** Codec2 frames per payload. */
  private readonly codec2Frames: number;
  private readonly payloadBytes: number;
  /** Separate native states, so encoding and decoding never disturb each other. */
  private encoder: Codec2Handle | undefined;
  private decoder: Codec2Handle | undefined;
  private readonly downsampler: Resampler = createResampler(PIPELINE_SAMPLE_RATE, CODEC2_SAMPLE_RATE);
  private readonly upsampler: Resampler = createResampler(CODEC2_SAMPLE_RATE, PIPELINE_SAMPLE_RATE);
  /** The last codec2 frame decoded (6 bytes), which concealment synthesises again. */
  private lastFrameBits: Uint8Array | undefined;
  /** 8 kHz samples concealed since the last payload was decoded. */
  private concealedSamples = 0;

  constructor(
    private readonly library: Codec2Library,
    frameMs: number,
  ) {
    this.frameSamples = frameSamplesFor(frameMs);
    this.codec2Frames = frameMs / CODEC2_FRAME_MS;
    this.payloadBytes = this.codec2Frames * CODEC2_FRAME_BYTES;
    this.encoder = this.createState();
    try {
      this.decoder = this.createState();
    } catch (error) {
      this.close();
      throw error;
    }
  }

  encode(pcm: Int16Array): Uint8Array {
    const encoder = this.open(this.encoder);
    if (pcm.length !== this.frameSamples) {
      throw new PluginError(`${NAME}: encode expects ${this.frameSamples} samples, got ${pcm.length}`);
    }
    const narrowband = this.downsampler.process(pcm);
    const payload = new Uint8Array(this.payloadBytes);
    for (let f = 0; f < this.codec2Frames; f++) {
      this.library.encode(encoder, codec2FrameBits(payload, f), codec2FrameSpeech(narrowband, f));
    }
    return payload;
  }

  decode(payload: Uint8Array): Int16Array {
    const decoder = this.open(this.decoder);
    if (payload.length !== this.payloadBytes) {
      throw new DecodeError(NAME, 'wrong-length', `payload is ${payload.length} bytes, expected ${this.payloadBytes}`);
    }
    // Every 48-bit pattern is a valid set of codec2 1200 quantiser indices: there is nothing
    // further to validate.
    const bits = Uint8Array.from(payload); // our own copy: the caller may reuse its buffer
    const narrowband = new Int16Array(this.codec2Frames * CODEC2_FRAME_SAMPLES);
    for (let f = 0; f < this.codec2Frames; f++) {
      this.library.decode(decoder, codec2FrameSpeech(narrowband, f), codec2FrameBits(bits, f));
    }
    this.lastFrameBits = codec2FrameBits(bits, this.codec2Frames - 1);
    this.concealedSamples = 0;
    return this.upsampler.process(narrowband);
  }

  /**
   * Codec2 has no packet-loss concealment of its own, so this is a short fade-out of the last
   * decoded frame: the last codec2 frame's parameters are synthesised again (the decoder keeps
   * its phase, so the voice continues without a click, unlike repeating the samples) under a
   * gain falling linearly from 1 to 0 over 80 ms of consecutive loss; silence after that, and
   * before anything was decoded.
   */
  conceal(): Int16Array {
    const decoder = this.open(this.decoder);
    const narrowband = new Int16Array(this.codec2Frames * CODEC2_FRAME_SAMPLES);
    if (this.lastFrameBits !== undefined && this.concealedSamples < CONCEAL_FADE_SAMPLES) {
      for (let f = 0; f < this.codec2Frames; f++) {
        this.library.decode(decoder, codec2FrameSpeech(narrowband, f), this.lastFrameBits);
      }
      this.fadeOut(narrowband);
    }
    return this.upsampler.process(narrowband);
  }

  close(): void {
    for (const handle of [this.encoder, this.decoder]) {
      if (handle !== undefined) this.library.destroy(handle);
    }
    this.encoder = undefined;
    this.decoder = undefined;
  }

  private fadeOut(narrowband: Int16Array): void {
    for (let i = 0; i < narrowband.length; i++, this.concealedSamples++) {
      const gain = Math.max(0, 1 - this.concealedSamples / CONCEAL_FADE_SAMPLES);
      narrowband[i] = Math.round(narrowband[i] * gain);
    }
  }

  private createState(): Codec2Handle {
    const handle = this.library.create(CODEC2_MODE_1200);
    if (handle === null) throw new PluginError(`${NAME}: codec2_create(${CODEC2_MODE_1200}) failed (out of memory?)`);
    return handle;
  }

  private open(handle: Codec2Handle | undefined): Codec2Handle {
    if (handle === undefined) throw new PluginError(`${NAME}: codec used after close()`);
    return handle;
  }
}

/** The bytes of codec2 frame `index` within a payload (a view). */
function codec2FrameBits(payload: Uint8Array, index: number): Uint8Array {
  return payload.subarray(index * CODEC2_FRAME_BYTES, (index + 1) * CODEC2_FRAME_BYTES);
}

/** The 8 kHz samples of codec2 frame `index` within a block of frames (a view). */
function codec2FrameSpeech(narrowband: Int16Array, index: number): Int16Array {
  return narrowband.subarray(index * CODEC2_FRAME_SAMPLES, (index + 1) * CODEC2_FRAME_SAMPLES);
}

export const codec2Codec: CodecFactory = {
  name: NAME,
  version: '0.1.0',
  codecId: 3,
  description: 'Codec2 1200 bit/s vocoder (libcodec2): 8 kHz speech, 6 bytes per 40 ms frame, concealment by fade-out',
  frameDurationsMs: FRAME_DURATIONS_MS,
  nominalBitrate: BITRATE,
  availability,
  create(options: CodecOptions): Codec {
    if (!FRAME_DURATIONS_MS.includes(options.frameMs)) {
      throw new PluginError(
        `${NAME}: unsupported frame duration ${options.frameMs} ms (supported: ${FRAME_DURATIONS_MS.join(', ')})`,
      );
    }
    const loaded = loadCodec2();
    if (!loaded.ok) throw new PluginError(`${NAME}: ${loaded.reason}`, { suggestions: [loaded.hint] });
    return new Codec2Codec(loaded.library, options.frameMs);
  },
};

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The `wzp:codecs` hook. */
export default async function codecs(): Promise<HookContribution<CodecFactory>> {
  return [codec2Codec];
}
