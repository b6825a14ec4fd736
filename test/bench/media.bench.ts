/**
 * Media engine costs: per-frame cost of each stage, the whole client pipeline (sender +
 * receiver, no network, noise suppression off) against Opus encode+decode alone, and FEC
 * encode/decode per block for every scheme. Numbers and ratios only; nothing passes or fails.
 */
import { frameSamplesFor } from '../../core/media/codec-types.js';
import type { FecSchemeFactory } from '../../core/media/fec-types.js';
import { percentile } from '../../core/media/analysis.js';
import { JitterBuffer } from '../../core/media/jitter-buffer.js';
import { MediaReceiver, MediaSender } from '../../core/media/pipeline.js';
import { QualityTier } from '../../core/wire/media-header.js';
import { MiniHeaderDecoder, MiniHeaderEncoder } from '../../core/wire/mini-header.js';
import { speechLike } from '../../core/media/speech.js';
import { splitFrames } from '../../core/media/tone.js';
import { opusCodec } from '../../src/plugins/codec-opus/index.js';
import fecNone from '../../src/plugins/fec-none/index.js';
import fecRaptorq from '../../src/plugins/fec-raptorq/index.js';
import fecRs from '../../src/plugins/fec-rs/index.js';
import fecXor from '../../src/plugins/fec-xor/index.js';

export const name = 'media engine: stages, pipeline vs Opus, FEC per block';

const FRAMES = 1500; // 30 s of 20 ms frames

function timeIt(iterations: number, fn: (i: number) => void): number {
  for (let i = 0; i < Math.min(50, iterations); i++) fn(i); // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn(i);
  return Number(process.hrtime.bigint() - t0) / 1000 / iterations; // µs per iteration
}

export async function run(): Promise<void> {
  const schemes = new Map<string, FecSchemeFactory>();
  for (const hook of [fecNone, fecRs, fecXor, fecRaptorq]) for (const f of await hook()) schemes.set(f.name, f);
  const frameSamples = frameSamplesFor(20);
  const frames = splitFrames(speechLike(FRAMES * 20, 3), frameSamples);

  // Opus alone: encode and decode separately, and the two per frame as a stream does (the
  // baseline for the pipeline ratio: same work pattern, nothing else).
  const enc = opusCodec.create({ frameMs: 20, bitrate: 24_000 });
  const dec = opusCodec.create({ frameMs: 20, bitrate: 24_000 });
  const payloads: Uint8Array[] = [];
  const encodeUs = timeIt(frames.length, (i) => (payloads[i] = enc.encode(frames[i])));
  const decodeUs = timeIt(frames.length, (i) => dec.decode(payloads[i]));
  const enc2 = opusCodec.create({ frameMs: 20, bitrate: 24_000 });
  const dec2 = opusCodec.create({ frameMs: 20, bitrate: 24_000 });
  const opusUs = timeIt(frames.length, (i) => dec2.decode(enc2.encode(frames[i])));
  enc2.close();
  dec2.close();
  console.log(`   opus 24k encode ${encodeUs.toFixed(1)} µs, decode ${decodeUs.toFixed(1)} µs; encode+decode per frame ${opusUs.toFixed(1)} µs`);

  // Other stages on their own.
  const miniEnc = new MiniHeaderEncoder();
  const miniDec = new MiniHeaderDecoder();
  const header = (i: number) => ({
    version: 1 as const,
    codecId: 1,
    tier: QualityTier.GOOD,
    sequence: i & 0xffff,
    timestamp: (i * frameSamples) >>> 0,
    frameSamples,
    fec: { schemeId: 0, block: i & 0xffff, symbol: 0, repair: false, k: 1, r: 0 },
    extensions: [],
  });
  const packets: Uint8Array[] = [];
  const hdrEncUs = timeIt(frames.length, (i) => (packets[i] = miniEnc.encodePacket(header(i), payloads[i])));
  const hdrDecUs = timeIt(frames.length, (i) => miniDec.decodePacket(packets[i]));
  console.log(`   media header (mini) encode ${hdrEncUs.toFixed(2)} µs, decode ${hdrDecUs.toFixed(2)} µs`);
  const jb = new JitterBuffer();
  const jbUs = timeIt(frames.length, (i) => {
    jb.insert({ seq: i & 0xffff, timestamp: (i * frameSamples) >>> 0, arrivalMs: i * 20, durationMs: 20, payload: payloads[i] });
    jb.pull(i * 20 + 60);
  });
  console.log(`   jitter buffer insert+pull ${jbUs.toFixed(2)} µs`);

  // The whole pipeline per frame: sender (codec, FEC, headers) + receiver (headers, FEC,
  // jitter buffer, decode), packets handed over directly, against Opus encode+decode alone.
  // The two are measured in alternating rounds over the same frames and the median ratio is
  // reported: on a shared 2-core machine the speed drifts between runs, and measuring one
  // after the other would compare different machine states.
  const ROUNDS = 7;
  const ROUND_FRAMES = Math.floor(frames.length / ROUNDS);
  for (const [scheme, k, r, depth] of [
    ['none', 1, 0, 1],
    ['rs', 4, 3, 2],
    ['raptorq', 4, 3, 2],
  ] as const) {
    const fec = schemes.get(scheme)!;
    const sender = new MediaSender({ tier: QualityTier.GOOD, codec: opusCodec, frameMs: 20, bitrate: 24_000, fec, k, r, depth });
    const receiver = new MediaReceiver({
      codecById: (id) => (id === opusCodec.codecId ? opusCodec : undefined),
      fecById: (id) => (id === fec.schemeId ? fec : undefined),
    });
    const baseEnc = opusCodec.create({ frameMs: 20, bitrate: 24_000 });
    const baseDec = opusCodec.create({ frameMs: 20, bitrate: 24_000 });
    let lost = 0;
    const ratios: number[] = [];
    const pipelineTimes: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const offset = round * ROUND_FRAMES;
      const baseUs = timeIt(ROUND_FRAMES, (i) => baseDec.decode(baseEnc.encode(frames[offset + i])));
      const pipelineUs = timeIt(ROUND_FRAMES, (i) => {
        const n = offset + i;
        for (const [j, p] of sender.sendFrame(frames[n]).entries()) {
          // With FEC, drop one source packet in ten so recovery runs too.
          if (r > 0 && j === 0 && n % 10 === 5) {
            lost++;
            continue;
          }
          receiver.receive(p, n * 20);
        }
        receiver.pull(n * 20);
      });
      ratios.push(baseUs / pipelineUs);
      pipelineTimes.push(pipelineUs);
    }
    console.log(
      `   pipeline with ${scheme} (k=${k} r=${r} d=${depth}) ${percentile(pipelineTimes, 50).toFixed(1)} µs per frame; ` +
        `Opus alone / pipeline = ${percentile(ratios, 50).toFixed(2)}x (median of ${ROUNDS} alternating rounds, range ` +
        `${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})${lost ? `; ${lost} source packets dropped to exercise recovery` : ''}`,
    );
    baseEnc.close();
    baseDec.close();
    sender.close();
    receiver.close();
  }

  // FEC per block, each scheme, at each tier's geometry (60-byte frames).
  for (const [label, k, r] of [
    ['GOOD 4+3', 4, 3],
    ['DEGRADED 2+4', 2, 4],
    ['CATASTROPHIC 5+15', 5, 15],
  ] as const) {
    for (const [schemeName, scheme] of schemes) {
      if (schemeName === 'none') continue;
      const codec = scheme.create({ k, r, maxFrameBytes: 4096 });
      const block = Array.from({ length: k }, (_, i) => payloads[i].slice(0, 60));
      const repairs = codec.encoder.encode(block);
      const encUs = timeIt(2000, () => codec.encoder.encode(block));
      // Decode with the first min(r, k) source frames lost.
      const received = [
        ...block.map((data, index) => ({ index, repair: false, data })).slice(Math.min(r, k)),
        ...repairs,
      ];
      const decUs = timeIt(2000, () => codec.decoder.decode(received, k));
      console.log(`   FEC ${schemeName.padEnd(8)} ${label.padEnd(18)} encode ${encUs.toFixed(1)} µs, decode ${decUs.toFixed(1)} µs per block`);
    }
  }
  enc.close();
  dec.close();
}
