/**
 * A quality tier's stream settings: its codec (the first of its choices that is registered and
 * usable here), frame size, bitrate, FEC scheme and the scheme's K, R and interleaving depth.
 * The one place a tier becomes what a MediaSender sends: calls (core/client/call.ts),
 * `echo-test --tier` and `sweep` all take it from here.
 */
import type { CodecFactory } from './codec-types.js';
import type { FecSchemeFactory } from './fec-types.js';
import type { StreamSettings } from './pipeline.js';
import { fecFor, selectCodec, tierByName, type TierName } from './quality.js';
import type { Registry } from '../registry.js';

/** Replace parts of a tier's own settings (what `wzp sweep` compares). */
export interface StreamOverrides {
  /** Another codec, at the tier's bitrate; its own first frame size if it lacks the tier's. */
  codec?: string;
  /** Another FEC scheme with the tier's K, R and depth (`none`: K 1, R 0). */
  fec?: string;
  k?: number;
  r?: number;
  depth?: number;
}

export interface StreamExtensions {
  codecs: Registry<CodecFactory>;
  fec: Registry<FecSchemeFactory>;
}

export function tierStreamSettings(tierName: TierName, extensions: StreamExtensions, overrides: StreamOverrides = {}): StreamSettings {
  const tier = tierByName(tierName);
  const { codecs } = extensions;
  const choice =
    overrides.codec === undefined
      ? selectCodec(tier, (c) => codecs.has(c) && codecs.get(c).factory.availability().available)
      : { ...selectCodec(tier, (c) => codecs.has(c)), codec: overrides.codec };
  const codec = codecs.require(choice.codec);
  const fec = fecFor(tier, choice);
  const scheme = overrides.fec ?? fec.scheme;
  const none = scheme === 'none';
  return {
    tier: tier.id,
    codec,
    frameMs: codec.frameDurationsMs.includes(choice.frameMs) ? choice.frameMs : codec.frameDurationsMs[0],
    bitrate: choice.bitrate,
    fec: extensions.fec.require(scheme),
    k: none ? 1 : (overrides.k ?? fec.k),
    r: none ? 0 : (overrides.r ?? fec.r),
    depth: overrides.depth ?? fec.interleaveDepth,
  };
}
