/**
 * The codec compliance suite. Every codec, built-in or third-party, must pass it; plugin
 * authors run it from their own tests:
 *
 *   import { describeCodecCompliance } from 'wzp/compliance';
 *   describeCodecCompliance(myCodecFactory);
 *
 * `codecComplianceChecks` returns the same checks as plain functions for other runners.
 * A check fails by throwing (node:assert errors with a message saying what was expected).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { alignAndSnr, rms } from '../media/analysis.js';
import { frameSamplesFor, type Codec, type CodecFactory } from '../media/codec-types.js';
import { Prng } from '../media/prng.js';
import { speechLike } from '../media/speech.js';
import { splitFrames, testSignal } from '../media/tone.js';
import { MAX_DATAGRAM_BYTES } from '../wire/datagram.js';

/**
 * The largest payload a codec may produce for one frame: a QUIC datagram (1306 bytes)
 * minus 32 bytes for the media header and the AEAD tag.
 */
export const MAX_CODEC_PAYLOAD_BYTES = MAX_DATAGRAM_BYTES - 32;

export interface CodecComplianceOptions {
  /**
   * Bitrate passed to create(). Default: the codec's own default. With a bitrate set, the
   * factory's `minRoundTripSnrDb` (a promise about the default settings) is not checked.
   */
  bitrate?: number;
  /** Length of the round-trip test signal (default 2000 ms). */
  signalMs?: number;
  /** Largest codec delay the round-trip alignment searches (default 100 ms). */
  maxDelayMs?: number;
  /** Largest level change a round trip may cause, dB (default 3). */
  maxLevelChangeDb?: number;
  /** Random payloads fed to decode() per frame duration (default 300). */
  randomPayloads?: number;
  /** Seed of the random payload generator, so that failures reproduce (default 1). */
  seed?: number;
}

export interface CodecComplianceCheck {
  name: string;
  /** False only for checks that inspect the factory without creating a codec. */
  requiresAvailability: boolean;
  run: () => void | Promise<void>;
}

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,31}$/;
const SEMVER_RE = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;
const SAMPLE_RATE_PER_MS = 48;

interface Settings {
  bitrate: number | undefined;
  signalMs: number;
  maxDelayMs: number;
  maxLevelChangeDb: number;
  randomPayloads: number;
  seed: number;
}

function settingsFrom(options: CodecComplianceOptions): Settings {
  return {
    bitrate: options.bitrate,
    signalMs: options.signalMs ?? 2000,
    maxDelayMs: options.maxDelayMs ?? 100,
    maxLevelChangeDb: options.maxLevelChangeDb ?? 3,
    randomPayloads: options.randomPayloads ?? 300,
    seed: options.seed ?? 1,
  };
}

/** The compliance checks for one codec factory, in a stable order. */
export function codecComplianceChecks(factory: CodecFactory, options: CodecComplianceOptions = {}): CodecComplianceCheck[] {
  const settings = settingsFrom(options);
  const checks: CodecComplianceCheck[] = [
    { name: 'metadata is valid', requiresAvailability: false, run: () => checkMetadata(factory) },
    { name: 'is available here', requiresAvailability: false, run: () => checkAvailable(factory) },
  ];
  const durations = Array.isArray(factory.frameDurationsMs) ? factory.frameDurationsMs : [];
  for (const frameMs of durations) {
    const withCodec = (name: string, body: (codec: Codec) => void): void => {
      checks.push({
        name: `${name} (${frameMs} ms)`,
        requiresAvailability: true,
        run: () => {
          const codec = factory.create({ frameMs, bitrate: settings.bitrate });
          try {
            body(codec);
          } finally {
            codec.close();
          }
        },
      });
    };
    withCodec('encodes a frame and decodes exactly frameSamples', (c) => checkFrameSizes(c, frameMs));
    withCodec('rejects wrong-sized input with a PluginError', checkWrongSizedInput);
    withCodec('payloads fit the datagram budget', (c) => checkPayloadBudget(c, settings.seed));
    withCodec('round trip keeps the signal', (c) => checkRoundTrip(factory, c, settings));
    withCodec('malformed payloads throw only DecodeError', (c) => checkMalformedPayloads(c, settings));
    withCodec('conceal(), if provided, returns full frames', checkConceal);
    checks.push({
      name: `close() twice is safe (${frameMs} ms)`,
      requiresAvailability: true,
      run: () => checkCloseTwice(factory, frameMs, settings.bitrate),
    });
  }
  return checks;
}

/**
 * Register the compliance checks as node:test tests in a `describe` block. When the codec
 * is unavailable here, the checks that need a codec instance are skipped with the reason.
 */
export function describeCodecCompliance(factory: CodecFactory, options: CodecComplianceOptions = {}): void {
  const availability = safeAvailability(factory);
  const skip = availability.available ? false : `codec unavailable: ${availability.reason}`;
  const variant = options.bitrate === undefined ? '' : ` at ${options.bitrate} bit/s`;
  describe(`codec compliance: ${String(factory.name)}${variant}`, () => {
    for (const check of codecComplianceChecks(factory, options)) {
      test(check.name, { skip: check.requiresAvailability && skip }, () => check.run());
    }
  });
}

function safeAvailability(factory: CodecFactory): { available: boolean; reason?: string } {
  try {
    return factory.availability();
  } catch (error) {
    return { available: false, reason: `availability() threw ${describeError(error)}` };
  }
}

function checkMetadata(factory: CodecFactory): void {
  assert.match(String(factory.name), NAME_RE, 'name: 1-32 characters of [a-z0-9-], starting with a letter or digit');
  assert.match(String(factory.version), SEMVER_RE, 'version must be semver');
  assert.ok(
    Number.isInteger(factory.codecId) && factory.codecId >= 0 && factory.codecId <= 254,
    `codecId must be an integer in 0-254 (third-party codecs: 64-254), got ${factory.codecId}`,
  );
  assert.ok(typeof factory.description === 'string' && factory.description.length > 0, 'description must be non-empty');
  assert.ok(
    Array.isArray(factory.frameDurationsMs) && factory.frameDurationsMs.length > 0,
    'frameDurationsMs must list at least one duration',
  );
  for (const frameMs of factory.frameDurationsMs) {
    assert.ok(
      frameMs > 0 && Number.isInteger(frameSamplesFor(frameMs)),
      `frame duration ${frameMs} ms must be positive and a whole number of 48 kHz samples`,
    );
  }
  assert.ok(Number.isFinite(factory.nominalBitrate) && factory.nominalBitrate > 0, 'nominalBitrate must be > 0');
  if (factory.minRoundTripSnrDb !== undefined) {
    assert.ok(Number.isFinite(factory.minRoundTripSnrDb), 'minRoundTripSnrDb must be a finite number when set');
  }
  assert.equal(typeof factory.availability, 'function', 'availability must be a function');
  assert.equal(typeof factory.create, 'function', 'create must be a function');
}

function checkAvailable(factory: CodecFactory): void {
  const availability = factory.availability();
  assert.equal(typeof availability.available, 'boolean', 'availability() must return { available: boolean, ... }');
  if (!availability.available) {
    assert.equal(typeof availability.reason, 'string', 'an unavailable codec must give a reason');
    assert.fail(`codec is unavailable: ${availability.reason}${availability.hint ? ` (hint: ${availability.hint})` : ''}`);
  }
}

function checkFrameSizes(codec: Codec, frameMs: number): void {
  assert.equal(codec.frameSamples, frameSamplesFor(frameMs), 'frameSamples must match the frame duration at 48 kHz');
  for (const frame of splitFrames(testSignal(frameMs * 5), codec.frameSamples)) {
    const payload = codec.encode(frame);
    assert.ok(payload instanceof Uint8Array, 'encode() must return a Uint8Array');
    const pcm = codec.decode(payload);
    assert.ok(pcm instanceof Int16Array, 'decode() must return an Int16Array');
    assert.equal(pcm.length, codec.frameSamples, 'decode() must return exactly frameSamples samples');
  }
}

function checkWrongSizedInput(codec: Codec): void {
  const n = codec.frameSamples;
  for (const length of [0, 1, n - 1, n + 1, 2 * n]) {
    assertThrowsNamed(() => codec.encode(new Int16Array(length)), 'PluginError', `encode() of ${length} samples`);
  }
  assert.ok(codec.encode(new Int16Array(n)) instanceof Uint8Array, 'encode() must still work after rejecting input');
}

function checkPayloadBudget(codec: Codec, seed: number): void {
  const n = codec.frameSamples;
  const random = new Prng(seed);
  const noise = Int16Array.from({ length: n }, () => (random.nextU32() & 0xffff) - 32768);
  const square = Int16Array.from({ length: n }, (_, i) => (i % 24 < 12 ? 32767 : -32768));
  const frames = [...splitFrames(testSignal(500), n), noise, square, noise, new Int16Array(n)];
  for (const [i, frame] of frames.entries()) {
    const bytes = codec.encode(frame).length;
    assert.ok(bytes <= MAX_CODEC_PAYLOAD_BYTES, `frame ${i}: payload of ${bytes} bytes exceeds ${MAX_CODEC_PAYLOAD_BYTES}`);
  }
}

function roundTrip(codec: Codec, reference: Int16Array): Int16Array {
  const decoded = new Int16Array(Math.ceil(reference.length / codec.frameSamples) * codec.frameSamples);
  splitFrames(reference, codec.frameSamples).forEach((frame, i) => {
    decoded.set(codec.decode(codec.encode(frame)), i * codec.frameSamples);
  });
  return decoded;
}

function checkRoundTrip(factory: CodecFactory, codec: Codec, settings: Settings): void {
  // The level is checked on speech-like material, what every voice codec is for (a vocoder
  // such as Codec2 does not reproduce a lone tone); the waveform promise on the test tone.
  const speech = speechLike(settings.signalMs, settings.seed);
  const levelChangeDb = 20 * Math.log10(rms(roundTrip(codec, speech)) / rms(speech));
  assert.ok(
    Math.abs(levelChangeDb) <= settings.maxLevelChangeDb,
    `round trip changed the level by ${levelChangeDb.toFixed(1)} dB (allowed ±${settings.maxLevelChangeDb} dB)`,
  );
  const promise = factory.minRoundTripSnrDb;
  if (promise === undefined || settings.bitrate !== undefined) return;
  const reference = testSignal(settings.signalMs);
  const decoded = roundTrip(codec, reference);
  const { snrDb, lagSamples } = alignAndSnr(reference, decoded, { maxLagSamples: settings.maxDelayMs * SAMPLE_RATE_PER_MS });
  assert.ok(
    snrDb >= promise,
    `round-trip SNR ${snrDb.toFixed(1)} dB (delay ${lagSamples} samples) is below the promised ${promise} dB`,
  );
}

function checkMalformedPayloads(codec: Codec, settings: Settings): void {
  const n = codec.frameSamples;
  const random = new Prng(settings.seed);
  const randomBytes = (length: number) => Uint8Array.from({ length }, () => random.nextU32() & 0xff);
  const randomBelow = (limit: number) => Math.floor(random.next() * limit);
  const frames = splitFrames(testSignal(8 * (n / SAMPLE_RATE_PER_MS)), n);
  const valid = frames.map((frame) => codec.encode(frame));
  const sample = valid[1];
  const cases: Array<[string, Uint8Array]> = [
    ['an empty payload', new Uint8Array(0)],
    ['a 1-byte payload', Uint8Array.of(0xff)],
    ['a payload cut in half', Uint8Array.from(sample.subarray(0, sample.length >> 1))],
    ['a payload missing its last byte', Uint8Array.from(sample.subarray(0, -1))],
    ['a payload with an extra byte', Uint8Array.of(...sample, 0)],
    ['a payload doubled', Uint8Array.of(...sample, ...sample)],
    ['an all-zero payload', new Uint8Array(sample.length)],
    ['an all-0xff payload', new Uint8Array(sample.length).fill(0xff)],
    [`an oversized payload (${4 * MAX_CODEC_PAYLOAD_BYTES} bytes)`, randomBytes(4 * MAX_CODEC_PAYLOAD_BYTES)],
  ];
  for (let i = 0; i < settings.randomPayloads; i++) {
    if (i % 2 === 0) {
      cases.push([`random payload #${i}`, randomBytes(randomBelow(MAX_CODEC_PAYLOAD_BYTES + 1))]);
    } else {
      const corrupted = Uint8Array.from(valid[i % valid.length]); // a copy, even if the codec returned a Buffer
      if (corrupted.length > 0) corrupted[randomBelow(corrupted.length)] ^= 1 + randomBelow(255);
      cases.push([`corrupted valid payload #${i}`, corrupted]);
    }
  }
  for (const [label, payload] of cases) expectDecodeErrorOrFrame(codec, label, payload);
  for (const payload of valid) {
    assert.equal(codec.decode(payload).length, n, 'decode() must keep working after malformed payloads');
  }
}

function expectDecodeErrorOrFrame(codec: Codec, label: string, payload: Uint8Array): void {
  let pcm: unknown;
  try {
    pcm = codec.decode(payload);
  } catch (error) {
    assert.equal(errorName(error), 'DecodeError', `decode() of ${label} threw ${describeError(error)}; only DecodeError is allowed`);
    return;
  }
  assert.ok(
    pcm instanceof Int16Array && pcm.length === codec.frameSamples,
    `decode() of ${label} must return frameSamples samples or throw DecodeError`,
  );
}

function checkConceal(codec: Codec): void {
  if (typeof codec.conceal !== 'function') return;
  const n = codec.frameSamples;
  assert.equal(codec.conceal().length, n, 'conceal() before any decode must return frameSamples samples');
  for (const frame of splitFrames(testSignal(5 * (n / SAMPLE_RATE_PER_MS)), n)) codec.decode(codec.encode(frame));
  for (let i = 0; i < 3; i++) {
    const pcm = codec.conceal();
    assert.ok(pcm instanceof Int16Array && pcm.length === n, `conceal() #${i + 1} must return frameSamples samples`);
  }
  assert.equal(codec.decode(codec.encode(new Int16Array(n))).length, n, 'decode() must work after conceal()');
}

function checkCloseTwice(factory: CodecFactory, frameMs: number, bitrate: number | undefined): void {
  const codec = factory.create({ frameMs, bitrate });
  codec.decode(codec.encode(new Int16Array(codec.frameSamples)));
  codec.close();
  assert.doesNotThrow(() => codec.close(), 'a second close() must not throw');
}

function assertThrowsNamed(fn: () => unknown, name: string, what: string): void {
  try {
    fn();
  } catch (error) {
    assert.equal(errorName(error), name, `${what} threw ${describeError(error)}; expected a ${name}`);
    return;
  }
  assert.fail(`${what} must throw a ${name}`);
}

function errorName(error: unknown): string | undefined {
  return error instanceof Error ? error.name : undefined;
}

function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : `a non-Error (${String(error)})`;
}
