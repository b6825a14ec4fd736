/**
 * The E-model (ITU-T G.107, narrowband), simplified to the inputs a VoIP path changes:
 *
 *   R = R0 - Is - Id - Ie,eff + A
 *
 * - R0 - Is, and the echo terms of Id (Idte, Idle), are held at their values for the G.107
 *   default parameters (Table 3: SLR 8, RLR 2, STMR 15, TELR 65, WEPL 110, T = Tr = 0, ...):
 *   R0 = 94.77, Is = 1.41, Idte = 0 (T = 0), Idle = 0.15; together R = 93.2 with no delay,
 *   loss or codec impairment. Holding T = 0 assumes talker echo is fully cancelled (acoustic
 *   echo cancellation at the endpoints, no hybrid), which is the G.107 default.
 * - Id is then Idd, the impairment of absolute one-way mouth-to-ear delay Ta (G.107 §7.3):
 *   Idd = 0 for Ta <= 100 ms, else 25 * ((1 + X^6)^(1/6) - 3 * (1 + (X/3)^6)^(1/6) + 2)
 *   with X = log2(Ta / 100).
 * - Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl) (G.107 §7.5), with Ppl the packet
 *   loss in percent and BurstR the burst ratio (1 for random loss).
 * - MOS from R per G.107 Annex B, floored at 1 (the cubic dips slightly below 1 for R < 6.5).
 *
 * Codec impairments (Ie, Bpl) are in CODEC_IMPAIRMENTS with their sources; only the G.711
 * entries are ITU-T values, the others are estimates (see docs/media-engine.md).
 */
import { UsageError } from '../errors.js';

/** R0 - Is - Idte - Idle at the G.107 default parameters. */
export const R_DEFAULT = 93.2;
/** Delay below which Idd is zero, ms (G.107 mT at its default). */
const IDD_THRESHOLD_MS = 100;

export interface CodecImpairment {
  /** Codec registry name this entry describes ('g711' has no wzp codec; it is the reference). */
  codec: string;
  /** Bits/s the values were derived at. */
  bitrate: number;
  /** Equipment impairment factor. */
  ie: number;
  /** Packet-loss robustness factor. */
  bpl: number;
  /** Where the values come from. */
  source: string;
}

export const CODEC_IMPAIRMENTS = {
  /** G.711 without packet-loss concealment. */
  g711: { codec: 'g711', bitrate: 64_000, ie: 0, bpl: 4.3, source: 'ITU-T G.113 Appendix I' },
  /** G.711 with the G.711 Appendix I PLC. */
  'g711-plc': { codec: 'g711', bitrate: 64_000, ie: 0, bpl: 25.1, source: 'ITU-T G.113 Appendix I' },
  /**
   * Opus 24 kbit/s (wideband/super-wideband). Estimate. Ie: Alahmadi, Počta & Melvin (ACM
   * TOMM 17(4), 2021) rate Opus SWB VBR 22-25 kbit/s at Ie about 20 on an extended-band
   * E-model scale, where narrowband G.711 itself sits about 36 below the top (129 - 93.2 on
   * G.107.1's wideband scale); being better than G.711, it gets this narrowband scale's
   * floor, Ie = 0. Bpl 11.3: their random-loss value for SWB VBR 25 kbit/s (instrumental
   * model, not P.833 listening tests).
   */
  'opus-24k': {
    codec: 'opus',
    bitrate: 24_000,
    ie: 0,
    bpl: 11.3,
    source: 'estimate: Ie = 0 (at or above G.711 quality); Bpl from Alahmadi, Pocta & Melvin 2021 (SWB VBR 25 kbit/s)',
  },
  /**
   * Opus 6 kbit/s narrowband VBR (libopus' default mode): Ie 23.0, Bpl 24.6 from Alahmadi,
   * Počta & Melvin (ACM TOMM 17(4), 2021), derived with an instrumental model, not P.833
   * listening tests. Their CBR value (Ie 46.3, Bpl 8.9) is far worse.
   */
  'opus-6k': {
    codec: 'opus',
    bitrate: 6_000,
    ie: 23,
    bpl: 24.6,
    source: 'estimate: Alahmadi, Pocta & Melvin 2021 (NB VBR 6 kbit/s)',
  },
  /**
   * Codec2 1200 bit/s: no published Ie. Conservative estimate: Ie = 50 (clean-channel MOS
   * about 2.3), worse than every published value we use for a >= 6 kbit/s codec, including
   * Opus 6 kbit/s CBR (46.3); Bpl = 5, close to G.711 without PLC (4.3), since Codec2 has
   * no concealment of its own and a lost 40 ms frame is long.
   */
  'codec2-1200': {
    codec: 'codec2',
    bitrate: 1_200,
    ie: 50,
    bpl: 5,
    source: 'estimate: conservative, no published value',
  },
} as const satisfies Record<string, CodecImpairment>;

export type CodecImpairmentName = keyof typeof CODEC_IMPAIRMENTS;

/** The table entry for a codec at a bitrate, if there is one. */
export function impairmentFor(codec: string, bitrate: number): CodecImpairment | undefined {
  return Object.values(CODEC_IMPAIRMENTS).find((e) => e.codec === codec && e.bitrate === bitrate);
}

export interface EModelInput {
  /** One-way mouth-to-ear delay Ta, ms. */
  delayMs: number;
  /** Packet loss Ppl, percent (after FEC recovery: what the decoder misses). */
  lossPct: number;
  /** Burst ratio BurstR (G.107): 1 for random loss, > 1 for bursty loss. Default 1. */
  burstR?: number;
  /** A CODEC_IMPAIRMENTS key, or explicit values. */
  codec: CodecImpairmentName | Pick<CodecImpairment, 'ie' | 'bpl'>;
  /** Advantage factor A. Default 0. */
  advantage?: number;
}

/** Idd: impairment from absolute one-way delay `delayMs` (G.107 §7.3, default sT = 1, mT = 100). */
export function delayImpairment(delayMs: number): number {
  if (delayMs <= IDD_THRESHOLD_MS) return 0;
  const x = Math.log2(delayMs / IDD_THRESHOLD_MS);
  return 25 * ((1 + x ** 6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2);
}

/** Ie,eff: the codec's impairment under `lossPct` packet loss with burst ratio `burstR`. */
export function effectiveEquipmentImpairment(ie: number, bpl: number, lossPct: number, burstR = 1): number {
  return ie + ((95 - ie) * lossPct) / (lossPct / burstR + bpl);
}

/**
 * BurstR of a two-state (Gilbert-Elliott) loss process, G.107 §7.5: 1 / (p + q), where p is
 * the probability of moving to the loss state after a received packet (1 / mean good run)
 * and q of leaving it after a lost one (1 / mean burst).
 */
export function burstRatio(meanGoodPackets: number, meanBurstPackets: number): number {
  return 1 / (1 / meanGoodPackets + 1 / meanBurstPackets);
}

export function rFactor(input: EModelInput): number {
  validate(input);
  const { ie, bpl } = typeof input.codec === 'string' ? CODEC_IMPAIRMENTS[input.codec] : input.codec;
  const ieEff = effectiveEquipmentImpairment(ie, bpl, input.lossPct, input.burstR ?? 1);
  return R_DEFAULT - delayImpairment(input.delayMs) - ieEff + (input.advantage ?? 0);
}

/** MOS (conversational quality estimate) from R, G.107 Annex B, floored at 1. */
export function mosFromR(r: number): number {
  if (r <= 0) return 1;
  if (r >= 100) return 4.5;
  return Math.max(1, 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6);
}

export function mos(input: EModelInput): number {
  return mosFromR(rFactor(input));
}

function validate(input: EModelInput): void {
  if (!(Number.isFinite(input.delayMs) && input.delayMs >= 0)) throw new UsageError(`e-model: delayMs must be >= 0, got ${input.delayMs}`);
  if (!(input.lossPct >= 0 && input.lossPct <= 100)) throw new UsageError(`e-model: lossPct must be within 0-100, got ${input.lossPct}`);
  if (input.burstR !== undefined && !(input.burstR >= 1)) throw new UsageError(`e-model: burstR must be >= 1, got ${input.burstR}`);
  if (typeof input.codec === 'string' && !(input.codec in CODEC_IMPAIRMENTS)) {
    throw new UsageError(`e-model: no impairment values for codec "${input.codec}"`, {
      suggestions: [`use one of ${Object.keys(CODEC_IMPAIRMENTS).join(', ')} or pass {ie, bpl}`],
    });
  }
}
