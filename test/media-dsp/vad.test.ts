import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { splitFrames, tone } from '../../core/media/tone.js';
import { SILENCE_DB, VoiceActivityDetector, frameEnergyDb, type VadDecision } from '../../core/media/vad.js';
import { mix, syntheticVoice, voicePauses, whiteNoise } from './signals.js';

const FRAME = 960;
const HANGOVER_FRAMES = 10; // 200 ms of 20 ms frames

function run(vad: VoiceActivityDetector, signal: Int16Array): VadDecision[] {
  return splitFrames(signal, FRAME).map((frame) => vad.process(frame));
}

function concat(...parts: Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Noise with 500 Hz tone bursts: [noise 1 s, burst 300 ms, noise 600 ms] x 3. */
function toneBursts(): { signal: Int16Array; burstFrames: Array<[number, number]> } {
  const parts: Int16Array[] = [];
  const burstFrames: Array<[number, number]> = [];
  let frames = 0;
  for (let i = 0; i < 3; i++) {
    const lead = whiteNoise(48_000, -50, 10 + i);
    const burst = mix(tone(500, 300, 0.1), whiteNoise(14_400, -50, 20 + i));
    const tail = whiteNoise(28_800, -50, 30 + i);
    frames += lead.length / FRAME;
    burstFrames.push([frames, frames + burst.length / FRAME]);
    frames += (burst.length + tail.length) / FRAME;
    parts.push(lead, burst, tail);
  }
  return { signal: concat(...parts), burstFrames };
}

describe('voice activity detector', () => {
  test('digital silence is never speech and reads as SILENCE_DB', () => {
    const decisions = run(new VoiceActivityDetector(), new Int16Array(48_000 * 2));
    assert.ok(decisions.every((d) => !d.speech && d.energyDb === SILENCE_DB));
  });

  test('steady noise is never speech, at any level', () => {
    for (const level of [-70, -50, -30]) {
      const decisions = run(new VoiceActivityDetector(), whiteNoise(48_000 * 3, level, 2));
      assert.equal(decisions.filter((d) => d.speech).length, 0, `noise at ${level} dBFS`);
      const last = decisions[decisions.length - 1];
      assert.ok(Math.abs(last.noiseFloorDb - Math.max(level, -70)) < 2, `floor ${last.noiseFloorDb} for noise at ${level}`);
    }
  });

  test('energy is measured without DC offset', () => {
    const offset = new Int16Array(FRAME).fill(5000);
    assert.equal(frameEnergyDb(offset), SILENCE_DB);
    const sine = tone(1000, 20, 0.5); // mean power of a sine: half its peak squared
    assert.ok(Math.abs(frameEnergyDb(sine) - 20 * Math.log10(0.5 / Math.SQRT2)) < 0.05);
  });

  test('tone bursts are speech, held for 200 ms of hangover, then silence again', () => {
    const { signal, burstFrames } = toneBursts();
    const decisions = run(new VoiceActivityDetector(), signal);
    for (const [start, end] of burstFrames) {
      for (let f = start; f < end; f++) assert.ok(decisions[f].speech, `frame ${f} in a burst`);
      for (let f = end; f < end + HANGOVER_FRAMES; f++) {
        assert.ok(decisions[f].speech && decisions[f].energyDb < -45, `frame ${f}: hangover after a burst`);
      }
      assert.ok(!decisions[end + HANGOVER_FRAMES].speech, 'no speech once the hangover ran out');
      assert.ok(!decisions[start - 1].speech, 'no speech before the burst');
    }
  });

  test('the noise floor adapts to a louder background within seconds, not frames', () => {
    const quiet = whiteNoise(48_000 * 2, -60, 3);
    const loud = whiteNoise(48_000 * 8, -35, 4);
    const decisions = run(new VoiceActivityDetector(), concat(quiet, loud));
    const step = quiet.length / FRAME;
    assert.ok(decisions[step].speech, 'a 25 dB jump is speech at first');
    const lastSpeech = decisions.findLastIndex((d) => d.speech);
    // 25 dB above a floor rising 5 dB/s: speech until the floor is within 9 dB (~3.2 s), plus hangover.
    const adaptSeconds = ((lastSpeech - step + 1) * FRAME) / 48_000;
    assert.ok(adaptSeconds > 2.5 && adaptSeconds < 4.5, `adapted after ${adaptSeconds} s`);
    assert.ok(Math.abs(decisions[decisions.length - 1].noiseFloorDb + 35) < 2);
  });

  test('the noise floor follows a quieter background at once, so quieter speech is heard', () => {
    const vad = new VoiceActivityDetector();
    run(vad, whiteNoise(48_000 * 2, -35, 5));
    const [first] = run(vad, whiteNoise(FRAME, -60, 6));
    assert.ok(Math.abs(first.noiseFloorDb + 60) < 1, `floor ${first.noiseFloorDb}`);
    const [burst] = run(vad, mix(tone(500, 20, 0.02), whiteNoise(FRAME, -60, 7)));
    assert.ok(burst.speech, 'a -40 dBFS tone over -60 dBFS noise');
  });

  test('a voice in noise: syllables are speech, pauses are not (after the hangover)', () => {
    const durationMs = 6000;
    const noisy = mix(syntheticVoice(durationMs, { levelDb: -25 }), whiteNoise(48_000 * 6, -50, 8));
    const vad = new VoiceActivityDetector();
    run(vad, whiteNoise(24_000, -50, 11)); // the call starts with background only
    const decisions = run(vad, noisy);
    const pauseFrames = new Set<number>();
    for (const [start, end] of voicePauses(durationMs)) {
      for (let f = Math.ceil(start / FRAME) + HANGOVER_FRAMES + 1; f < Math.floor(end / FRAME); f++) pauseFrames.add(f);
    }
    assert.ok(pauseFrames.size > 0);
    for (const f of pauseFrames) assert.ok(!decisions[f].speech, `pause frame ${f}`);
    const spoken = decisions.filter((_, f) => !pauseFrames.has(f));
    const speechShare = spoken.filter((d) => d.speech).length / spoken.length;
    assert.ok(speechShare > 0.85, `${(speechShare * 100).toFixed(0)}% of the other frames are speech`);
  });

  test('a muted microphone does not make the next hiss look like speech for long', () => {
    const decisions = run(new VoiceActivityDetector(), concat(new Int16Array(48_000), whiteNoise(48_000 * 3, -58, 9)));
    assert.equal(decisions[49].noiseFloorDb, -70, 'the floor stops at minNoiseFloorDb');
    const speechFrames = decisions.filter((d) => d.speech).length;
    assert.ok(speechFrames * 0.02 < 1, `${speechFrames} frames of speech`);
  });

  test('deterministic, and reset() starts a new stream', () => {
    const { signal } = toneBursts();
    const vad = new VoiceActivityDetector();
    const first = run(vad, signal);
    vad.reset();
    assert.deepEqual(run(vad, signal), first);
    assert.deepEqual(run(new VoiceActivityDetector(), signal), first);
  });

  test('options are checked, and frames must have the configured length', () => {
    assert.throws(() => new VoiceActivityDetector({ frameSamples: 0 }), { name: 'InternalError' });
    assert.throws(() => new VoiceActivityDetector({ marginDb: -1 }), { name: 'InternalError' });
    assert.throws(() => new VoiceActivityDetector({ minNoiseFloorDb: 3 }), { name: 'InternalError' });
    assert.throws(() => new VoiceActivityDetector().process(new Int16Array(480)), { name: 'InternalError' });
    const vad10ms = new VoiceActivityDetector({ frameSamples: 480, hangoverMs: 100 });
    assert.equal(vad10ms.process(new Int16Array(480)).speech, false);
  });
});
