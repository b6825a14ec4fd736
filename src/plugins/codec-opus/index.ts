/**
 * Built-in codec plugin: Opus through libopus (@discordjs/opus), 48 kHz mono, VOIP mode.
 *
 * The native module is loaded lazily on first use, so a missing or broken native build makes
 * the codec report itself unavailable (with the rebuild hint) instead of breaking CLI startup.
 */
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import {
  DecodeError,
  frameSamplesFor,
  PIPELINE_SAMPLE_RATE,
  PluginError,
  type Availability,
  type Codec,
  type CodecFactory,
  type CodecOptions,
  type HookContribution,
} from '../../../core/plugin.js';

type OpusModule = typeof import('@discordjs/opus');
type NativeOpus = InstanceType<OpusModule['OpusEncoder']>;

/** From libopus' opus_defines.h. */
const OPUS_SET_APPLICATION_REQUEST = 4000;
const OPUS_APPLICATION_VOIP = 2048;

const FRAME_DURATIONS_MS: readonly number[] = [20, 40, 60];
const DEFAULT_BITRATE = 24_000;
const MIN_BITRATE = 6_000;
const MAX_BITRATE = 510_000;
const REBUILD_HINT = 'npm rebuild @discordjs/opus';

type LoadResult = { ok: true; opus: OpusModule } | { ok: false; error: unknown };
let loadResult: LoadResult | undefined;

function loadOpus(): LoadResult {
  if (loadResult === undefined) {
    const require = createRequire(import.meta.url);
    try {
      loadResult = { ok: true, opus: (requirePrebuilt(require) ?? require('@discordjs/opus')) as OpusModule };
    } catch (error) {
      loadResult = { ok: false, error };
    }
  }
  return loadResult;
}

/**
 * The package's entry point is `require(nodePreGyp.find(package.json))`: node-pre-gyp (with
 * npmlog, gauge, semver, readable-stream, detect-libc: ~70 modules) only to compute the
 * directory of the binary. Its `module_path` is
 * `prebuild/{node_abi}-napi-v{napi}-{platform}-{arch}-{libc}-{libc_version}/opus.node`, so when
 * exactly one directory there fits this Node ABI, platform and architecture we load that
 * binary directly; the module is the binary's exports either way. Anything else (no such
 * directory, several, or a binary that does not load) goes through the package, which gives
 * its own error. Measured: 55-70 ms -> ~1 ms, on the path to a call's first audio.
 */
function requirePrebuilt(require: NodeJS.Require): unknown {
  try {
    const prebuild = join(dirname(require.resolve('@discordjs/opus/package.json')), 'prebuild');
    const prefix = `node-v${process.versions.modules}-napi-v`;
    const platform = `-${process.platform}-${process.arch}-`;
    const fits = readdirSync(prebuild).filter((d) => d.startsWith(prefix) && d.includes(platform));
    return fits.length === 1 ? require(join(prebuild, fits[0], 'opus.node')) : undefined;
  } catch {
    return undefined;
  }
}

function availability(): Availability {
  const loaded = loadOpus();
  if (loaded.ok) return { available: true };
  return { available: false, reason: loadFailure(loaded.error), hint: REBUILD_HINT };
}

function loadFailure(error: unknown): string {
  const firstLine = messageOf(error).split('\n')[0]; // Node appends the require stack
  return `the @discordjs/opus native module does not load: ${firstLine}`;
}

/** 48 kHz samples per Opus frame for a TOC byte (RFC 6716 section 3.1, table 2). */
function samplesPerFrame(toc: number): number {
  const config = toc >> 3;
  if (config < 12) return [480, 960, 1920, 2880][config & 3]; // SILK-only: 10/20/40/60 ms
  if (config < 16) return [480, 960][config & 1]; // hybrid: 10/20 ms
  return 120 << (config & 3); // CELT-only: 2.5/5/10/20 ms
}

/** Frames in an Opus packet (RFC 6716 section 3.2), or undefined if the header is cut short. */
function frameCount(packet: Uint8Array): number | undefined {
  switch (packet[0] & 3) {
    case 0:
      return 1;
    case 1:
    case 2:
      return 2;
    default:
      return packet.length >= 2 ? packet[1] & 0x3f : undefined;
  }
}

/** Samples the packet decodes to according to its header, or undefined if it has none. */
function packetSamples(packet: Uint8Array): number | undefined {
  if (packet.length === 0) return undefined;
  const frames = frameCount(packet);
  return frames === undefined ? undefined : frames * samplesPerFrame(packet[0]);
}

class OpusCodec implements Codec {
  readonly name = 'opus';
  readonly frameSamples: number;
  private native: NativeOpus | undefined;
  /** TOC byte of the last packet decoded: its mode and frame size drive concealment. */
  private lastToc: number | undefined;

  constructor(opus: OpusModule, frameMs: number, bitrate: number) {
    this.frameSamples = frameSamplesFor(frameMs);
    try {
      this.native = new opus.OpusEncoder(PIPELINE_SAMPLE_RATE, 1);
      // The binding creates its encoder in AUDIO mode; libopus allows switching the
      // application before the first frame is encoded.
      this.native.applyEncoderCTL(OPUS_SET_APPLICATION_REQUEST, OPUS_APPLICATION_VOIP);
      this.native.setBitrate(bitrate);
    } catch (error) {
      throw new PluginError(`opus: could not set up libopus: ${messageOf(error)}`, {
        cause: error,
        suggestions: [REBUILD_HINT],
      });
    }
  }

  encode(pcm: Int16Array): Uint8Array {
    const native = this.open();
    if (pcm.length !== this.frameSamples) {
      throw new PluginError(`opus: encode expects ${this.frameSamples} samples, got ${pcm.length}`);
    }
    try {
      const packet = native.encode(Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength));
      // A plain Uint8Array view: a Buffer's slice() shares memory where Uint8Array's copies.
      return new Uint8Array(packet.buffer, packet.byteOffset, packet.length);
    } catch (error) {
      throw new PluginError(`opus: libopus failed to encode: ${messageOf(error)}`, { cause: error });
    }
  }

  decode(payload: Uint8Array): Int16Array {
    this.open();
    const samples = packetSamples(payload);
    if (samples === undefined) {
      throw new DecodeError('opus', 'truncated', `packet of ${payload.length} bytes has no complete header`);
    }
    if (samples !== this.frameSamples) {
      throw new DecodeError('opus', 'wrong-duration', `packet holds ${samples} samples, expected ${this.frameSamples}`);
    }
    const pcm = this.decodeNative(payload);
    this.lastToc = payload[0];
    return pcm;
  }

  /**
   * Packet-loss concealment by libopus itself. The binding offers no "decode a lost packet"
   * call (decoding an empty buffer would conceal a fixed 120 ms), but libopus runs its PLC
   * for every zero-length frame inside a packet. So we hand it a code-3 packet (TOC of the
   * last packet, then the frame count) whose frames are all empty: exactly one frame
   * duration of concealment, in the mode the stream was using.
   */
  conceal(): Int16Array {
    this.open();
    if (this.lastToc === undefined) return new Int16Array(this.frameSamples); // nothing heard yet
    const frames = this.frameSamples / samplesPerFrame(this.lastToc);
    return this.decodeNative(Uint8Array.of((this.lastToc & 0xfc) | 3, frames));
  }

  close(): void {
    // The binding frees libopus state when the object is garbage-collected; dropping our
    // only reference is all there is to do.
    this.native = undefined;
  }

  private decodeNative(packet: Uint8Array): Int16Array {
    const native = this.open();
    let decoded: Buffer;
    try {
      decoded = native.decode(Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength));
    } catch (error) {
      throw new DecodeError('opus', 'corrupt', `libopus rejected the packet: ${messageOf(error)}`);
    }
    if (decoded.length !== this.frameSamples * 2) {
      throw new DecodeError('opus', 'wrong-duration', `decoded ${decoded.length / 2} samples, expected ${this.frameSamples}`);
    }
    const pcm = new Int16Array(this.frameSamples);
    new Uint8Array(pcm.buffer).set(decoded); // the binding returns host-endian samples, as Int16Array holds them
    return pcm;
  }

  private open(): NativeOpus {
    if (this.native === undefined) throw new PluginError('opus: codec used after close()');
    return this.native;
  }
}

export const opusCodec: CodecFactory = {
  name: 'opus',
  version: '0.1.0',
  codecId: 1,
  description: 'Opus (libopus), 48 kHz mono, VOIP mode, 6-510 kbit/s (default 24 kbit/s), with packet-loss concealment',
  frameDurationsMs: FRAME_DURATIONS_MS,
  nominalBitrate: DEFAULT_BITRATE,
  minRoundTripSnrDb: 15,
  availability,
  create(options: CodecOptions): Codec {
    if (!FRAME_DURATIONS_MS.includes(options.frameMs)) {
      throw new PluginError(`opus: unsupported frame duration ${options.frameMs} ms (supported: ${FRAME_DURATIONS_MS.join(', ')})`);
    }
    const bitrate = options.bitrate ?? DEFAULT_BITRATE;
    if (!Number.isInteger(bitrate) || bitrate < MIN_BITRATE || bitrate > MAX_BITRATE) {
      throw new PluginError(`opus: bitrate must be an integer within ${MIN_BITRATE}-${MAX_BITRATE} bit/s, got ${bitrate}`);
    }
    const loaded = loadOpus();
    if (!loaded.ok) {
      throw new PluginError(`opus: ${loadFailure(loaded.error)}`, { suggestions: [REBUILD_HINT] });
    }
    return new OpusCodec(loaded.opus, options.frameMs, bitrate);
  },
};

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The `wzp:codecs` hook. */
export default async function codecs(): Promise<HookContribution<CodecFactory>> {
  return [opusCodec];
}
