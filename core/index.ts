/**
 * wzp as a library: the engine under the CLI (never imports oclif). Applications can run
 * relays, calls and diagnostics. Plugin authors take the extension contracts from here or,
 * without loading the engine, from `wzp/plugin` (core/plugin.ts).
 */
// Errors, extension contracts and the plugin building blocks (also `wzp/plugin`, core/plugin.ts).
export * from './plugin.js';
export * from './registry.js';
export * as wire from './wire/index.js';
export { Identity, generateIdentity, identityFromMnemonic, loadOrCreateIdentity } from './crypto/identity.js';
export { deriveTlsCertificate, certFingerprint } from './crypto/tls-cert.js';
export { deriveRoomKeys, hashRoomName, type RoomKeys } from './crypto/room-name.js';
export { KnownMembers, type KnownMember, type Meeting } from './crypto/known-members.js';
export { Relay } from './relay/relay.js';
export { RelaySession } from './client/relay-session.js';
export { runCall } from './client/call.js';
export { PresenceClient, type PresenceEvent } from './client/presence.js';
export { IncomingCall, placeCall, runDirectMedia, type EstablishedCall } from './client/direct-call.js';
export { deriveCallKeys, deriveCallSecret, exportCallKey, generateEphemeralKey, type CallContext, type CallKeys } from './crypto/call-keys.js';
export { CallSignalVerifier, signCallSignal } from './crypto/call-signal.js';
export type { RoomCallSession } from './client/call-session.js';
export { MediaPathSwitch, MediaPayloadTooLargeError, QuicDatagramTransport, type MediaTransport, type MediaTransportStats } from './transport/media-transport.js';
export { runEchoTest } from './client/echo.js';
export { MediaReceiver, MediaSender } from './media/pipeline.js';
export { runScenario } from './media/sweep.js';
