/**
 * `wzp/plugin`: what a plugin needs from wzp, and nothing that starts the engine. The
 * extension contracts (codec, FEC scheme, NAT strategy), the error classes whose `name`s wzp
 * tells failures apart by, and the building blocks wzp's own codecs and FEC schemes are made
 * of (a resampler, GF(256) arithmetic, FEC block and symbol helpers).
 *
 * wzp's built-in plugins (src/plugins/*) import only this module, `wzp` (core/index.ts, which
 * re-exports everything here) and `wzp/compliance`: exactly what a third-party plugin can
 * import (the lint checks it, docs/plugins.md). This entry point exists apart from `wzp`
 * because a plugin's hook runs at the start of every command: `wzp` pulls in the relay, the
 * call engine and QUIC, which cost ~50 ms of start-up when a built-in plugin imported it
 * (measured on the CLI bundle: loading the seven built-in plugins took 52 ms instead of 4 ms).
 */
export * from './errors.js';
export { HOOK_CODECS, HOOK_FEC, HOOK_NAT_STRATEGIES, type HookContribution } from './registry.js';

// Extension contracts.
export { PIPELINE_SAMPLE_RATE, frameSamplesFor, type Availability, type Codec, type CodecFactory, type CodecOptions } from './media/codec-types.js';
export {
  FEC_MAX_FRAME_BYTES,
  FEC_MAX_K,
  FEC_MAX_R,
  type FecCodec,
  type FecDecoder,
  type FecEncoder,
  type FecPacket,
  type FecParams,
  type FecSchemeFactory,
} from './media/fec-types.js';
export { DEFAULT_STRATEGY_LIMITS, type NatProfile, type NatStrategy, type NatStrategyFactory, type ProbePlan, type StrategyContext, type StrategyLimits } from './nat/strategy-types.js';
export type { Endpoint } from './nat/stun.js';
export type { FilteringBehaviour, MappingBehaviour } from './nat/behaviour.js';
export { MAX_SEQUENTIAL_DELTA, WRAP_FLOOR_PORT, advancePort, type PortAllocationKind } from './nat/port-allocation.js';
export {
  MAX_OBSERVED_AGO_MS,
  MAX_RECENT_PORTS,
  MAX_REFLEXIVE_ENDPOINTS,
  NAT_PORT_POOL,
  checkNatProfile,
  ipFamily,
  isPort,
  sharedFamily,
} from './nat/strategy-input.js';

// Building blocks: audio.
export { createResampler, type Resampler } from './media/resample.js';

// Building blocks: FEC (docs/fec.md describes the block layout they implement).
export {
  blockCodec,
  checkFramesToEncode,
  collectBlock,
  presentRepairs,
  sourcePackets,
  validateFecParams,
  type CollectedBlock,
  type FecParamLimits,
} from './media/fec/block.js';
export { gfInv, gfInvertMatrix, gfMul, gfMulAddInto, gfRankInPlace } from './media/fec/gf256.js';
export { LENGTH_PREFIX_BYTES, bareRepairSymbolSize, checkSymbolSize, mulAddSymbolInto, readSymbol, symbolSizeFor, writeSymbol } from './media/fec/symbols.js';
export { binomial, subsets } from './media/fec/subsets.js';
