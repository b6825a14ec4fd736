/**
 * Built-in codec plugin: pcm16, uncompressed linear 16-bit audio.
 *
 * 48 kHz L16 needs 1920 bytes per 20 ms frame, more than a QUIC datagram carries (1306
 * bytes), so pcm16 is wideband L16: the pipeline's 48 kHz is resampled to 16 kHz inside the
 * codec and sent as big-endian samples as in RTP L16 (RFC 3551): 640 bytes per 20 ms frame,
 * 256 kbit/s. Audio above ~6.7 kHz is filtered out.
 */
import {
  createResampler,
  DecodeError,
  frameSamplesFor,
  PIPELINE_SAMPLE_RATE,
  PluginError,
  type Codec,
  type CodecFactory,
  type CodecOptions,
  type HookContribution,
  type Resampler,
} from '../../../core/plugin.js';

const WIRE_SAMPLE_RATE = 16_000;
const BYTES_PER_SAMPLE = 2;
const FRAME_DURATIONS_MS: readonly number[] = [10, 20];

class Pcm16Codec implements Codec {
  readonly name = 'pcm16';
  readonly frameSamples: number;
  /** Samples per frame on the wire, at 16 kHz. */
  private readonly wireSamples: number;
  private readonly downsampler: Resampler = createResampler(PIPELINE_SAMPLE_RATE, WIRE_SAMPLE_RATE);
  private readonly upsampler: Resampler = createResampler(WIRE_SAMPLE_RATE, PIPELINE_SAMPLE_RATE);

  constructor(frameMs: number) {
    this.frameSamples = frameSamplesFor(frameMs);
    this.wireSamples = (WIRE_SAMPLE_RATE * frameMs) / 1000;
  }

  encode(pcm: Int16Array): Uint8Array {
    if (pcm.length !== this.frameSamples) {
      throw new PluginError(`pcm16: encode expects ${this.frameSamples} samples, got ${pcm.length}`);
    }
    const wide = this.downsampler.process(pcm);
    const payload = new Uint8Array(wide.length * BYTES_PER_SAMPLE);
    const view = new DataView(payload.buffer);
    for (let i = 0; i < wide.length; i++) view.setInt16(i * BYTES_PER_SAMPLE, wide[i], false);
    return payload;
  }

  decode(payload: Uint8Array): Int16Array {
    const expected = this.wireSamples * BYTES_PER_SAMPLE;
    if (payload.length !== expected) {
      throw new DecodeError('pcm16', 'wrong-length', `payload is ${payload.length} bytes, expected ${expected}`);
    }
    const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    const wide = new Int16Array(this.wireSamples);
    for (let i = 0; i < wide.length; i++) wide[i] = view.getInt16(i * BYTES_PER_SAMPLE, false);
    return this.upsampler.process(wide);
  }

  close(): void {
    // Nothing to release: the codec holds no native resources.
  }
}

export const pcm16Codec: CodecFactory = {
  name: 'pcm16',
  version: '0.1.0',
  codecId: 0,
  description: 'Uncompressed wideband L16: 16 kHz big-endian 16-bit PCM, 256 kbit/s (resampled from 48 kHz)',
  frameDurationsMs: FRAME_DURATIONS_MS,
  nominalBitrate: WIRE_SAMPLE_RATE * BYTES_PER_SAMPLE * 8,
  minRoundTripSnrDb: 60,
  availability: () => ({ available: true }),
  create(options: CodecOptions): Codec {
    if (!FRAME_DURATIONS_MS.includes(options.frameMs)) {
      throw new PluginError(
        `pcm16: unsupported frame duration ${options.frameMs} ms (supported: ${FRAME_DURATIONS_MS.join(', ')})`,
      );
    }
    return new Pcm16Codec(options.frameMs);
  },
};

/** The `wzp:codecs` hook. */
export default async function codecs(): Promise<HookContribution<CodecFactory>> {
  return [pcm16Codec];
}
