/**
 * wzp as a library: the engine under the CLI (never imports oclif). Plugin authors take the
 * extension contracts from here; applications can run relays, calls and diagnostics.
 */
export * from './errors.js';
export * from './registry.js';
export type { Availability, Codec, CodecFactory, CodecOptions } from './media/codec-types.js';
export { PIPELINE_SAMPLE_RATE, frameSamplesFor } from './media/codec-types.js';
export type { FecCodec, FecDecoder, FecEncoder, FecPacket, FecParams, FecSchemeFactory } from './media/fec-types.js';
export type { EndpointObservation, NatStrategy, NatStrategyFactory, ProbePlan } from './nat/strategy-types.js';
export * as wire from './wire/index.js';
export { Identity, generateIdentity, identityFromMnemonic, loadOrCreateIdentity } from './crypto/identity.js';
export { deriveTlsCertificate, certFingerprint } from './crypto/tls-cert.js';
export { deriveRoomKeys, hashRoomName, type RoomKeys } from './crypto/room-name.js';
export { KnownMembers, type KnownMember, type Meeting } from './crypto/known-members.js';
export { Relay } from './relay/relay.js';
export { RelaySession } from './client/relay-session.js';
export { runCall } from './client/call.js';
export { runEchoTest } from './client/echo.js';
export { MediaReceiver, MediaSender } from './media/pipeline.js';
export { runScenario } from './media/sweep.js';
