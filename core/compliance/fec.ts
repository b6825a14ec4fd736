/**
 * The FEC compliance suite: every FEC scheme, built-in or third-party, must pass it.
 *
 *   import { describeFecCompliance } from 'wzp/compliance';
 *   describeFecCompliance(myFactory);            // in a node:test file
 *
 * or run `fecComplianceChecks(factory)` under any test runner. The checks: metadata; invalid
 * params and encoder input rejected with the documented errors; lossless round trips; EVERY
 * erasure pattern of up to guaranteedRecoverable(params) lost packets repaired byte-exactly
 * (several geometries; frames of 0, 1 and maxFrameBytes bytes, mixed; short blocks); losses
 * beyond the promise never yield wrong bytes; malformed blocks rejected with DecodeError and
 * nothing else, and random garbage never escaping as another error.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sourcePackets } from '../media/fec/block.js';
import { binomial, subsets } from '../media/fec/subsets.js';
import { Prng } from '../media/prng.js';
import type { Availability } from '../media/codec-types.js';
import {
  FEC_MAX_FRAME_BYTES,
  FEC_MAX_K,
  FEC_MAX_R,
  type FecDecoder,
  type FecPacket,
  type FecParams,
  type FecSchemeFactory,
} from '../media/fec-types.js';

export interface FecComplianceCheck {
  name: string;
  /** False only for checks that inspect the factory without running the scheme. */
  requiresAvailability: boolean;
  run: () => void | Promise<void>;
}

export interface FecGeometry {
  k: number;
  r: number;
}

export interface FecComplianceOptions {
  /** Block geometries to test. Default: (1,1), (2,3), (5,2), (5,5), (8,4). */
  geometries?: readonly FecGeometry[];
  /** maxFrameBytes for every geometry. Default 160. */
  maxFrameBytes?: number;
  /**
   * Most erasure patterns one geometry's promise may need (default 20,000). A promise
   * needing more fails the check rather than being sampled: pass smaller geometries.
   */
  maxPatterns?: number;
  /** Patterns tried per geometry beyond the promise (default 150). */
  beyondPromiseTrials?: number;
  /** Seed for frame contents and random trials. Default 1. */
  seed?: number;
}

const DEFAULT_GEOMETRIES: readonly FecGeometry[] = [
  { k: 1, r: 1 },
  { k: 2, r: 3 },
  { k: 5, r: 2 },
  { k: 5, r: 5 },
  { k: 8, r: 4 },
];
const NAME_RE = /^[a-z0-9][a-z0-9-]{0,31}$/;
const SEMVER_RE = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;

interface Settings {
  geometries: readonly FecGeometry[];
  maxFrameBytes: number;
  maxPatterns: number;
  beyondPromiseTrials: number;
  seed: number;
}

/** One block to test with: its frames and the packets the encoder made for them. */
interface Sample {
  label: string;
  params: FecParams;
  frames: Uint8Array[];
  packets: FecPacket[];
}

// ---------------------------------------------------------------------------------------
// Helpers

function randomBytes(prng: Prng, length: number): Uint8Array {
  return Uint8Array.from({ length }, () => prng.nextU32() & 0xff);
}

/** Frame sets for one geometry: mixed sizes (0, 1, max, random), all tiny, all max, a short block. */
function frameSets(k: number, maxFrameBytes: number, prng: Prng): { label: string; frames: Uint8Array[] }[] {
  const mixedLength = (i: number): number =>
    [1, maxFrameBytes, 0][i] ?? 1 + Math.floor(prng.next() * maxFrameBytes);
  const sets = [
    { label: 'mixed sizes', frames: Array.from({ length: k }, (_, i) => randomBytes(prng, mixedLength(i))) },
    { label: '1-byte frames', frames: Array.from({ length: k }, () => randomBytes(prng, 1)) },
    { label: 'max-size frames', frames: Array.from({ length: k }, () => randomBytes(prng, maxFrameBytes)) },
  ];
  if (k > 1) {
    const short = Math.max(1, k - 2);
    sets.push({
      label: `short block of ${short}`,
      frames: Array.from({ length: short }, (_, i) => randomBytes(prng, mixedLength(short - 1 - i))),
    });
  }
  return sets;
}

function samplesFor(factory: FecSchemeFactory, s: Settings): Sample[] {
  const prng = new Prng(s.seed);
  return s.geometries.flatMap(({ k, r }) => {
    const params = { k, r, maxFrameBytes: s.maxFrameBytes };
    const { encoder } = factory.create(params);
    return frameSets(k, s.maxFrameBytes, prng).map(({ label, frames }) => ({
      label: `k=${k} r=${r} ${label}`,
      params,
      frames,
      packets: [...sourcePackets(frames), ...encoder.encode(frames)],
    }));
  });
}

/** A decoder as a receiver builds it: from the header's k and r only. */
function receiverDecoder(factory: FecSchemeFactory, params: FecParams): FecDecoder {
  return factory.create({ k: params.k, r: params.r, maxFrameBytes: FEC_MAX_FRAME_BYTES }).decoder;
}

function assertThrowsNamed(run: () => unknown, name: string, what: string): void {
  assert.throws(run, (err: unknown) => {
    assert.ok(err instanceof Error, `${what}: threw a non-Error`);
    assert.equal(err.name, name, `${what}: expected ${name}, got ${err.name}: ${err.message}`);
    return true;
  });
}

function without(packets: readonly FecPacket[], lost: readonly number[]): FecPacket[] {
  return packets.filter((_, i) => !lost.includes(i));
}

/** Every frame is either undefined or exactly the original; received frames are all there. */
function assertNoWrongFrames(out: unknown, sample: Sample, kept: readonly FecPacket[], what: string): void {
  assert.ok(Array.isArray(out), `${what}: decode must return an array`);
  assert.equal(out.length, sample.frames.length, `${what}: decode must return k entries`);
  out.forEach((frame, i) => {
    if (frame !== undefined) assert.deepEqual(frame, sample.frames[i], `${what}: frame ${i} has wrong bytes`);
  });
  for (const p of kept) {
    if (!p.repair) assert.deepEqual(out[p.index], sample.frames[p.index], `${what}: received frame ${p.index} missing`);
  }
}

function shuffled<T>(items: readonly T[], prng: Prng): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(prng.next() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Checks

function checkMetadata(factory: FecSchemeFactory, s: Settings): void {
  assert.match(factory.name, NAME_RE, 'name: 1-32 chars of [a-z0-9-]');
  assert.match(factory.version, SEMVER_RE, 'version: semver');
  assert.ok(Number.isInteger(factory.schemeId) && factory.schemeId >= 0 && factory.schemeId <= 254, 'schemeId: 0..254');
  assert.ok(typeof factory.description === 'string' && factory.description.length > 0, 'description: non-empty');
  const a = factory.availability();
  assert.ok(a.available === true || (a.available === false && typeof a.reason === 'string'), 'availability() shape');
  if (!a.available) return;
  for (const { k, r } of s.geometries) {
    const g = factory.guaranteedRecoverable({ k, r, maxFrameBytes: s.maxFrameBytes });
    assert.ok(Number.isInteger(g) && g >= 0 && g <= r, `guaranteedRecoverable(k=${k}, r=${r}) = ${g}: must be 0..r`);
  }
}

function checkInvalidParams(factory: FecSchemeFactory, s: Settings): void {
  const { k, r } = s.geometries[0];
  const base = { k, r, maxFrameBytes: s.maxFrameBytes };
  const invalid: [string, FecParams][] = [
    ['k=0', { ...base, k: 0 }],
    [`k=${FEC_MAX_K + 1}`, { ...base, k: FEC_MAX_K + 1 }],
    ['k=2.5', { ...base, k: 2.5 }],
    ['r=-1', { ...base, r: -1 }],
    [`r=${FEC_MAX_R + 1}`, { ...base, r: FEC_MAX_R + 1 }],
    ['maxFrameBytes=0', { ...base, maxFrameBytes: 0 }],
    [`maxFrameBytes=${FEC_MAX_FRAME_BYTES + 1}`, { ...base, maxFrameBytes: FEC_MAX_FRAME_BYTES + 1 }],
  ];
  for (const [what, params] of invalid) {
    assertThrowsNamed(() => factory.create(params), 'UsageError', `create(${what})`);
    assertThrowsNamed(() => factory.guaranteedRecoverable(params), 'UsageError', `guaranteedRecoverable(${what})`);
  }
}

function checkEncoderInput(factory: FecSchemeFactory, s: Settings): void {
  for (const { k, r } of s.geometries) {
    const { encoder } = factory.create({ k, r, maxFrameBytes: s.maxFrameBytes });
    const frame = new Uint8Array(1);
    assertThrowsNamed(() => encoder.encode([]), 'PluginError', 'encode([])');
    assertThrowsNamed(() => encoder.encode(new Array(k + 1).fill(frame)), 'PluginError', `encode(${k + 1} frames)`);
    const oversized = new Uint8Array(s.maxFrameBytes + 1);
    assertThrowsNamed(() => encoder.encode([oversized]), 'PluginError', 'encode(frame over maxFrameBytes)');
  }
}

function checkRoundTrip(factory: FecSchemeFactory, samples: readonly Sample[], prng: Prng): void {
  for (const sample of samples) {
    const { r } = sample.params;
    const k = sample.frames.length;
    const repairs = sample.packets.slice(k);
    assert.equal(repairs.length, r, `${sample.label}: encode must return r repair packets`);
    repairs.forEach((p, j) => {
      assert.equal(p.index, k + j, `${sample.label}: repair ${j} index`);
      assert.equal(p.repair, true, `${sample.label}: repair flag`);
      assert.ok(p.data instanceof Uint8Array, `${sample.label}: repair data must be a Uint8Array`);
      assert.equal(p.data.length, repairs[0].data.length, `${sample.label}: repair payloads of one length`);
    });
    const decoder = receiverDecoder(factory, sample.params);
    assert.deepEqual(decoder.decode(sample.packets, k), sample.frames, `${sample.label}: all packets`);
    assert.deepEqual(decoder.decode(sample.packets.slice(0, k), k), sample.frames, `${sample.label}: source packets only`);
    assert.deepEqual(decoder.decode(shuffled(sample.packets, prng), k), sample.frames, `${sample.label}: any order`);
  }
}

function checkEncoderLeavesInput(factory: FecSchemeFactory, samples: readonly Sample[]): void {
  for (const sample of samples) {
    const copies = sample.frames.map((f) => f.slice());
    factory.create(sample.params).encoder.encode(sample.frames);
    assert.deepEqual(sample.frames, copies, `${sample.label}: encode modified its input`);
  }
}

function checkPromisedPatterns(factory: FecSchemeFactory, samples: readonly Sample[], s: Settings): void {
  for (const sample of samples) {
    const promised = factory.guaranteedRecoverable(sample.params);
    const n = sample.packets.length;
    let patterns = 0;
    for (let e = 0; e <= promised; e++) patterns += binomial(n, e);
    assert.ok(
      patterns <= s.maxPatterns,
      `${sample.label}: promise of ${promised} lost packets needs ${patterns} patterns, over maxPatterns ${s.maxPatterns}`,
    );
    const decoder = receiverDecoder(factory, sample.params);
    for (let e = 1; e <= promised; e++) {
      for (const lost of subsets(n, e)) {
        const out = decoder.decode(without(sample.packets, lost), sample.frames.length);
        assert.deepEqual(out, sample.frames, `${sample.label}: losing packets [${lost.join(',')}] must be repaired`);
      }
    }
  }
}

function checkBeyondPromise(factory: FecSchemeFactory, samples: readonly Sample[], s: Settings, prng: Prng): void {
  for (const sample of samples) {
    const promised = factory.guaranteedRecoverable(sample.params);
    const n = sample.packets.length;
    if (promised >= n) continue;
    const decoder = receiverDecoder(factory, sample.params);
    for (let trial = 0; trial < s.beyondPromiseTrials; trial++) {
      const e = promised + 1 + Math.floor(prng.next() * (n - promised));
      const lost = shuffled([...Array(n).keys()], prng).slice(0, e);
      const kept = without(sample.packets, lost);
      const what = `${sample.label}: losing [${lost.sort((a, b) => a - b).join(',')}]`;
      assertNoWrongFrames(decoder.decode(kept, sample.frames.length), sample, kept, what);
    }
  }
}

/** Malformed blocks built from a valid one; each must be a DecodeError. */
function malformedCases(sample: Sample): [string, FecPacket[], number][] {
  const { k: fullK, r } = sample.params;
  const k = sample.frames.length;
  const src = sample.packets.slice(0, k);
  const rep = sample.packets.slice(k);
  const lostFirst = [...src.slice(1), ...rep];
  const cases: [string, FecPacket[], number][] = [
    ['k = 0', sample.packets, 0],
    [`k = ${fullK + 1} (over params.k)`, sample.packets, fullK + 1],
    ['k = 1.5', sample.packets, 1.5],
    ['k = NaN', sample.packets, Number.NaN],
    ['index -1', [...lostFirst, { ...src[0], index: -1 }], k],
    [`index ${k + r} (past k+r-1)`, [...lostFirst, { index: k + r, repair: true, data: rep[0]?.data ?? src[0].data }], k],
    ['index 0.5', [...lostFirst, { ...src[0], index: 0.5 }], k],
    ['duplicate source index', [...sample.packets, src[src.length - 1]], k],
    ['source packet flagged repair', [...lostFirst.filter((p) => p.index !== 1), { ...(src[1] ?? src[0]), repair: true }], k],
    ['source frame over maxFrameBytes', [{ index: 0, repair: false, data: new Uint8Array(FEC_MAX_FRAME_BYTES + 1) }], k],
  ];
  if (r >= 1) {
    cases.push(
      ['duplicate repair index', [...lostFirst, rep[0]], k],
      ['repair packet flagged source', [...src.slice(1), { ...rep[0], repair: false }], k],
      ['empty repair payload', [...src.slice(1), { ...rep[0], data: new Uint8Array(0) }], k],
    );
  }
  if (r >= 2) {
    const truncated = { ...rep[1], data: rep[1].data.subarray(0, rep[1].data.length - 1) };
    cases.push(['repair payloads of different lengths', [...src.slice(1), rep[0], truncated], k]);
  }
  return cases;
}

function checkMalformed(factory: FecSchemeFactory, samples: readonly Sample[]): void {
  for (const sample of samples) {
    const decoder = receiverDecoder(factory, sample.params);
    for (const [what, packets, k] of malformedCases(sample)) {
      assertThrowsNamed(() => decoder.decode(packets, k), 'DecodeError', `${sample.label}: ${what}`);
    }
  }
}

/** Garbage: only DecodeError or a well-formed answer (received frames intact) may come out. */
function checkGarbage(factory: FecSchemeFactory, samples: readonly Sample[], prng: Prng): void {
  const mutations: ((p: FecPacket) => FecPacket)[] = [
    (p) => ({ ...p, data: randomBytes(prng, p.data.length) }),
    (p) => ({ ...p, data: p.data.subarray(0, Math.floor(prng.next() * p.data.length)) }),
    (p) => ({ ...p, data: randomBytes(prng, Math.floor(prng.next() * 2 * (p.data.length + 8))) }),
    (p) => {
      const data = p.data.slice();
      if (data.length > 0) data[Math.floor(prng.next() * data.length)] ^= 1 + Math.floor(prng.next() * 255);
      return { ...p, data };
    },
  ];
  for (const sample of samples) {
    const k = sample.frames.length;
    if (sample.packets.length === k) continue;
    const decoder = receiverDecoder(factory, sample.params);
    for (let trial = 0; trial < 60; trial++) {
      const lost = shuffled([...Array(k).keys()], prng).slice(0, 1 + Math.floor(prng.next() * k));
      const kept = without(sample.packets, lost).map((p) =>
        p.repair && prng.next() < 0.7 ? mutations[Math.floor(prng.next() * mutations.length)](p) : p,
      );
      try {
        const out = decoder.decode(kept, k);
        assert.ok(Array.isArray(out) && out.length === k, `${sample.label}: garbage gave a malformed answer`);
        out.forEach((frame) => assert.ok(frame === undefined || frame instanceof Uint8Array));
        for (const p of kept) {
          if (!p.repair) assert.deepEqual(out[p.index], p.data, `${sample.label}: garbage lost received frame ${p.index}`);
        }
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
        assert.equal((err as Error)?.name, 'DecodeError', `${sample.label}: garbage repair data threw ${String(err)}`);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Public API

function settingsFrom(options: FecComplianceOptions): Settings {
  return {
    geometries: options.geometries ?? DEFAULT_GEOMETRIES,
    maxFrameBytes: options.maxFrameBytes ?? 160,
    maxPatterns: options.maxPatterns ?? 20_000,
    beyondPromiseTrials: options.beyondPromiseTrials ?? 150,
    seed: options.seed ?? 1,
  };
}

/** The compliance checks for one FEC scheme; each `run` throws on failure. */
export function fecComplianceChecks(factory: FecSchemeFactory, options: FecComplianceOptions = {}): FecComplianceCheck[] {
  const s = settingsFrom(options);
  let cached: Sample[] | undefined;
  const samples = (): Sample[] => (cached ??= samplesFor(factory, s));
  const prng = new Prng(s.seed ^ 0x5eed);
  const check = (name: string, run: () => void): FecComplianceCheck => ({ name, requiresAvailability: true, run });
  return [
    {
      name: 'metadata: name, version, schemeId, description, availability, promise',
      requiresAvailability: false,
      run: () => checkMetadata(factory, s),
    },
    check('invalid params are rejected with UsageError', () => checkInvalidParams(factory, s)),
    check('encoder rejects empty, oversized blocks and frames with PluginError', () => checkEncoderInput(factory, s)),
    check('round trip without loss returns the exact frames', () => checkRoundTrip(factory, samples(), prng)),
    check('encoder leaves its input frames unchanged', () => checkEncoderLeavesInput(factory, samples())),
    check('every promised erasure pattern is repaired byte-exactly', () => checkPromisedPatterns(factory, samples(), s)),
    check('losses beyond the promise never yield wrong frames', () => checkBeyondPromise(factory, samples(), s, prng)),
    check('malformed blocks are rejected with DecodeError', () => checkMalformed(factory, samples())),
    check('garbage repair data yields DecodeError or a well-formed answer', () => checkGarbage(factory, samples(), prng)),
  ];
}

/**
 * Register the compliance checks as node:test tests in a `describe` block. When the scheme
 * is unavailable here, the checks that need to run it are skipped with the reason.
 */
export function describeFecCompliance(factory: FecSchemeFactory, options: FecComplianceOptions = {}): void {
  const availability = safeAvailability(factory);
  const skip = availability.available ? false : `FEC scheme unavailable: ${availability.reason}`;
  describe(`FEC compliance: ${factory.name}`, () => {
    for (const check of fecComplianceChecks(factory, options)) {
      it(check.name, { skip: check.requiresAvailability && skip }, () => check.run());
    }
  });
}

/** availability(), or unavailable if it throws (the metadata check then reports the throw). */
function safeAvailability(factory: FecSchemeFactory): Availability {
  try {
    return factory.availability();
  } catch (err) {
    return { available: false, reason: `availability() threw ${err instanceof Error ? err.message : String(err)}` };
  }
}
