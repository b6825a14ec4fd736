/** fast-check arbitraries for the wire formats, shared by the property tests. */
import fc from 'fast-check';
import {
  FRAME_UNIT_SAMPLES,
  MAX_CODEC_ID,
  MAX_FRAME_UNITS,
  type FecInfo,
  type HeaderExtension,
  type MediaHeader,
  type QualityReport,
  type QualityTier,
} from '../../core/wire/media-header.js';
import type { KnownSignalMessage } from '../../core/wire/signal.js';

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });

export const tierArb: fc.Arbitrary<QualityTier> = fc.constantFrom(0, 1, 2);

export const fecArb: fc.Arbitrary<FecInfo> = fc.record(
  { schemeId: u8, block: u16, symbol: u8, repair: fc.boolean(), k: u8, r: u8 },
  { noNullPrototype: true },
);

export const reportArb: fc.Arbitrary<QualityReport> = fc.record({ fractionLost: u8, rttMs: u16, jitterMs: u16 }, { noNullPrototype: true });

/** Up to 4 extensions whose block fits in 255 bytes. */
export const extensionsArb: fc.Arbitrary<HeaderExtension[]> = fc.array(
  fc.record({ id: u8, data: fc.uint8Array({ maxLength: 60 }) }, { noNullPrototype: true }),
  { maxLength: 4 },
);

export const frameSamplesArb = fc.integer({ min: 1, max: MAX_FRAME_UNITS }).map((units) => units * FRAME_UNIT_SAMPLES);

export const mediaHeaderArb: fc.Arbitrary<MediaHeader> = fc.record(
  {
    version: fc.constant(1 as const),
    codecId: fc.integer({ min: 0, max: MAX_CODEC_ID }),
    tier: tierArb,
    sequence: u16,
    timestamp: u32,
    frameSamples: frameSamplesArb,
    fec: fecArb,
    report: reportArb,
    extensions: extensionsArb,
  },
  { noNullPrototype: true, requiredKeys: ['version', 'codecId', 'tier', 'sequence', 'timestamp', 'frameSamples', 'fec', 'extensions'] },
);

/** Strings of any code points, including ones JSON must escape. */
const textArb = fc.string({ unit: 'binary', maxLength: 40 });
const modeArb = fc.constantFrom('echo' as const, 'room' as const);
const nonceArb = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });

const sourceIdArb = fc.integer({ min: 1, max: 0xffff_ffff });
const participantArb = fc.record(
  { sourceId: sourceIdArb, alias: fc.string({ unit: 'binary', maxLength: 20 }), fingerprint: fc.string({ unit: 'binary', maxLength: 20 }) },
  { noNullPrototype: true },
);
/** Shaped like a member announcement; the wire carries any JSON object there. */
const announcementArb = fc.record(
  { fingerprint: textArb, identityPublicKey: textArb, x25519PublicKey: textArb, signature: textArb, extra: fc.array(fc.integer(), { maxLength: 3 }) },
  { noNullPrototype: true, requiredKeys: ['fingerprint'] },
);

const portArb = fc.integer({ min: 1, max: 65535 });
const ipv4Arb = fc.tuple(fc.ipV4(), portArb).map(([ip, port]) => `${ip}:${port}`);
const ipv6Arb = fc.tuple(fc.ipV6(), portArb).map(([ip, port]) => `[${ip}]:${port}`);

export const knownSignalArb: fc.Arbitrary<KnownSignalMessage> = fc.oneof(
  fc.record(
    { type: fc.constant('hello' as const), version: u32, alias: textArb, client: textArb },
    { noNullPrototype: true, requiredKeys: ['type', 'version'] },
  ),
  fc.record({ type: fc.constant('hello-ack' as const), version: u32, relayFingerprint: textArb }, { noNullPrototype: true }),
  fc.record({ type: fc.constant('ping' as const), nonce: nonceArb }, { noNullPrototype: true }),
  fc.record({ type: fc.constant('pong' as const), nonce: nonceArb }, { noNullPrototype: true }),
  fc.constant({ type: 'reflect' as const }),
  fc.record({ type: fc.constant('reflect-response' as const), observedAddress: fc.oneof(ipv4Arb, ipv6Arb) }, { noNullPrototype: true }),
  fc.record(
    { type: fc.constant('join' as const), mode: modeArb, room: textArb, alias: textArb, fingerprint: textArb, announcement: announcementArb },
    { noNullPrototype: true, requiredKeys: ['type', 'mode'] },
  ),
  fc.record(
    {
      type: fc.constant('joined' as const),
      mode: modeArb,
      room: textArb,
      sourceId: sourceIdArb,
      participants: fc.array(participantArb, { maxLength: 4 }),
      announcements: fc.array(fc.record({ sourceId: sourceIdArb, announcement: announcementArb }, { noNullPrototype: true }), { maxLength: 4 }),
    },
    { noNullPrototype: true, requiredKeys: ['type', 'mode'] },
  ),
  fc.record(
    {
      type: fc.constant('room-update' as const),
      room: textArb,
      participants: fc.array(participantArb, { maxLength: 4 }),
      joined: sourceIdArb,
      left: sourceIdArb,
      announcement: announcementArb,
    },
    { noNullPrototype: true, requiredKeys: ['type', 'room', 'participants'] },
  ),
  fc.constant({ type: 'leave' as const }),
  fc.record({ type: fc.constant('error' as const), code: textArb, message: textArb }, { noNullPrototype: true }),
  fc.record({ type: fc.constant('draining' as const), deadlineMs: u32 }, { noNullPrototype: true }),
);

/** Cuts `bytes` into chunks at the given fractional positions. */
export function chunked(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const positions = [...new Set(cuts.map((cut) => Math.floor(cut * bytes.length)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const position of [...positions, bytes.length]) {
    chunks.push(bytes.subarray(start, position));
    start = position;
  }
  return chunks;
}

export const cutsArb = fc.array(fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), { maxLength: 12 });

/** One step of a synthetic media stream (see mediaStream). */
export type StreamStep =
  | { kind: 'next' }
  | { kind: 'report'; report: QualityReport }
  | { kind: 'codec'; codecId: number }
  | { kind: 'tier'; tier: QualityTier }
  | { kind: 'jump'; sequence: number; timestamp: number }
  | { kind: 'block'; block: number }
  | { kind: 'extensions'; extensions: HeaderExtension[] };

/** Mostly steady frames, now and then a report, and rarely something the mini header cannot follow. */
export const streamStepArb: fc.Arbitrary<StreamStep> = fc.oneof(
  { weight: 40, arbitrary: fc.constant({ kind: 'next' as const }) },
  { weight: 2, arbitrary: reportArb.map((report) => ({ kind: 'report' as const, report })) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: MAX_CODEC_ID }).map((codecId) => ({ kind: 'codec' as const, codecId })) },
  { weight: 1, arbitrary: tierArb.map((tier) => ({ kind: 'tier' as const, tier })) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('jump' as const), sequence: u16, timestamp: u32 }, { noNullPrototype: true }) },
  { weight: 1, arbitrary: u16.map((block) => ({ kind: 'block' as const, block })) },
  { weight: 1, arbitrary: extensionsArb.map((extensions) => ({ kind: 'extensions' as const, extensions })) },
);

/** Only steady frames and reports: nothing that changes the receiver's context. */
export const steadyStepArb: fc.Arbitrary<StreamStep> = fc.oneof(
  { weight: 20, arbitrary: fc.constant({ kind: 'next' as const }) },
  { weight: 1, arbitrary: reportArb.map((report) => ({ kind: 'report' as const, report })) },
);

/** The headers a sender produces from `start`, one per step. */
export function mediaStream(start: MediaHeader, steps: readonly StreamStep[]): MediaHeader[] {
  const headers: MediaHeader[] = [];
  let previous = withoutReport(start);
  for (const step of steps) {
    const next = applyStep(nextFrame(previous), step);
    headers.push(next);
    previous = withoutReport(next);
  }
  return headers;
}

/** The next frame: sequence and timestamp advance, the FEC position moves through its block. */
function nextFrame(header: MediaHeader): MediaHeader {
  const blockSize = Math.min(256, Math.max(1, header.fec.k + header.fec.r));
  const symbol = (header.fec.symbol + 1) % blockSize;
  const block = symbol === 0 ? (header.fec.block + 1) & 0xffff : header.fec.block;
  return {
    ...header,
    sequence: (header.sequence + 1) & 0xffff,
    timestamp: (header.timestamp + header.frameSamples) >>> 0,
    fec: { ...header.fec, block, symbol, repair: symbol >= header.fec.k },
  };
}

function applyStep(header: MediaHeader, step: StreamStep): MediaHeader {
  switch (step.kind) {
    case 'next':
      return header;
    case 'report':
      return { ...header, report: step.report };
    case 'codec':
      return { ...header, codecId: step.codecId };
    case 'tier':
      return { ...header, tier: step.tier };
    case 'jump':
      return { ...header, sequence: step.sequence, timestamp: step.timestamp };
    case 'block':
      return { ...header, fec: { ...header.fec, block: step.block } };
    case 'extensions':
      return { ...header, extensions: step.extensions };
  }
}

export function withoutReport(header: MediaHeader): MediaHeader {
  const { report: _report, ...rest } = header;
  return rest;
}
