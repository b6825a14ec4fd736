/**
 * core/audio/devices against real-time virtual devices (a private PulseAudio daemon, reached
 * through PortAudio's ALSA host API exactly as a sound card would be).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { audioAvailability, listDevices, openInput, openOutput, type AudioInput, type AudioOutput } from '../../core/audio/devices.js';
import { rms } from '../../core/media/analysis.js';
import { tone } from '../../core/media/tone.js';
import { CAPTURE_SAMPLE_RATE, startVirtualAudio, virtualAudioSkipReason, type VirtualAudio } from '../helpers/virtual-audio.js';

const RATE = 48_000;
const FRAME = 960;
const POLL_MS = 5;
/** Resolution of the tone-presence analysis. */
const BLOCK_MS = 5;
const TEST_TIMEOUT_MS = 20_000;

/** Opens both directions, waits out the server's death, reports what the API saw. */
const SERVER_DEATH_CHILD = `
  import { nativeAudioStuck, openInput, openOutput } from ${JSON.stringify(new URL('../../core/audio/devices.js', import.meta.url).href)};
  const input = await openInput({ deviceId: 'virtmic', frameSamples: 960 });
  const output = await openOutput({ deviceId: 'virtspeaker' });
  process.stderr.write('\\nOPEN\\n');
  await new Promise((resolve) => setTimeout(resolve, 4000));
  const closing = performance.now();
  await Promise.all([input.close(), output.close()]);
  const closeMs = performance.now() - closing;
  const reopenError = await openInput({ frameSamples: 960 }).then(() => 'none', (err) => err.name);
  const result = { inputError: input.error?.name, outputError: output.error?.name, closeMs, reopenError, stuck: nativeAudioStuck() };
  process.stderr.write('RESULT ' + JSON.stringify(result) + '\\n');
  process.kill(process.pid, 'SIGKILL');
`;

describe('audio devices (virtual PulseAudio mic and speaker)', { skip: virtualAudioSkipReason() }, () => {
  let va: VirtualAudio;

  before(async () => {
    va = await startVirtualAudio();
    const availability = await audioAvailability();
    assert.ok(availability.available, `audio unavailable: ${JSON.stringify(availability)}`);
  });

  after(async () => {
    await va?.stop();
  });

  test('PortAudio lists the virtual microphone and speaker', { timeout: TEST_TIMEOUT_MS }, async () => {
    const devices = await listDevices();
    const names = devices.map((d) => d.name);
    for (const name of ['virtmic', 'virtspeaker', 'default']) assert.ok(names.includes(name), `${name} missing from ${names}`);
    const defaults = devices.find((d) => d.name === 'default');
    assert.ok(defaults?.isDefaultInput && defaults.isDefaultOutput);
    for (const d of devices) {
      assert.equal(d.hostApi, 'ALSA');
      assert.ok(d.maxInputChannels >= 1 && d.maxOutputChannels >= 1);
    }
  });

  test('capture: a tone played into the microphone arrives in real time, at its level and pitch', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    // A roomy buffer: on a loaded machine the sound server itself can stall and then deliver a
    // burst longer than the default 200 ms; lost audio would still show in the checks below.
    const input = await openInput({ deviceId: 'virtmic', frameSamples: FRAME, bufferMs: 1000 });
    const capture = startCollecting(input);
    try {
      await sleep(200);
      const injected = tone(1000, 2000, 0.5);
      await va.inject(injected, RATE);
      await sleep(200);
      const { samples, firstFrameMs, realTimeRatio } = capture.stop();
      t.diagnostic(`open ${input.device.openMs.toFixed(1)} ms, first frame after ${firstFrameMs.toFixed(1)} ms, ${(realTimeRatio * 100).toFixed(1)}% of real time`);

      assert.ok(firstFrameMs < 200, `first frame after ${firstFrameMs} ms`);
      assert.ok(Math.abs(realTimeRatio - 1) < 0.05, `captured ${realTimeRatio} x real time`);
      assert.equal(input.dropped, 0);
      t.diagnostic(assertTone(samples, injected, 1000, 2000));
    } finally {
      await input.close();
    }
  });

  test('readSamples: any count, from what is buffered, the shortfall as silence', { timeout: TEST_TIMEOUT_MS }, async () => {
    const input = await openInput({ deviceId: 'virtmic', frameSamples: FRAME, bufferMs: 1000 });
    try {
      await va.inject(tone(1000, 500, 0.5), RATE);
      const buffered = input.available();
      const more = buffered + 4800;
      const out = input.readSamples(more);
      assert.equal(out.length, more);
      assert.ok(input.available() < 960, `took what was buffered (${input.available()} left)`);
      const peak = (pcm: Int16Array) => pcm.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      assert.ok(peak(out.subarray(0, buffered)) > 8000, 'the buffered tone comes first');
      assert.equal(peak(out.subarray(buffered)), 0, 'the shortfall reads as silence');
      assert.equal(input.readSamples(480).length, 480);
    } finally {
      await input.close();
    }
  });

  test('playback: a tone written to the speaker reaches it in real time, at its level and pitch', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const output = await openOutput({ deviceId: 'virtspeaker' });
    try {
      const recording = va.captureSpeaker(2200);
      await sleep(200);
      const written = tone(440, 1500, 0.3);
      await playPaced(output, written);
      const recorded = await recording;
      t.diagnostic(`open ${output.device.openMs.toFixed(1)} ms, ${output.underruns} underruns`);
      t.diagnostic(assertTone(recorded, written, 440, 1500));
      assert.equal(output.dropped, 0);
    } finally {
      await output.close();
    }
  });

  test('latency: output to input through the virtual mic, and output open to first sound', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const loopMs = await measureLoopLatency();
    const openToHeardMs = await measureOpenToHeard();
    t.diagnostic(`output->input loop ${loopMs.toFixed(1)} ms; output open -> first sound captured ${openToHeardMs.toFixed(1)} ms`);
    assert.ok(loopMs < 100, `loop latency ${loopMs} ms`);
    assert.ok(openToHeardMs < 300, `open to first sound ${openToHeardMs} ms`);
  });

  test('an unknown device is a UsageError naming the devices there are; so is a bad rate', { timeout: TEST_TIMEOUT_MS }, async () => {
    const listsDevices = (err: Error) =>
      err.name === 'UsageError' && err.message.includes('no-such-device') && err.message.includes('virtmic') && err.message.includes('virtspeaker');
    await assert.rejects(openInput({ deviceId: 'no-such-device', frameSamples: FRAME }), listsDevices);
    await assert.rejects(openOutput({ deviceId: 'no-such-device' }), listsDevices);
    await assert.rejects(openInput({ deviceId: 999, frameSamples: FRAME }), { name: 'UsageError' });
    await assert.rejects(openOutput({ sampleRate: 44_100 }), { name: 'UsageError' });
  });

  test('close() may be called twice, and concurrently; use after close is harmless', { timeout: TEST_TIMEOUT_MS }, async () => {
    const input = await openInput({ frameSamples: FRAME });
    const output = await openOutput();
    output.write(tone(440, 100));
    await Promise.all([input.close(), input.close(), output.close(), output.close()]);
    await input.close();
    await output.close();
    input.read();
    output.write(tone(440, 20));
    assert.equal(output.queuedSamples(), 0);
  });

  // Last: it kills the sound server. In a child process, because naudiodon then leaves a
  // thread-pool thread blocked for good, and such a process only ends through a signal.
  test('a sound server that dies fails the open streams and later opens, without crashing', { timeout: TEST_TIMEOUT_MS }, async () => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', SERVER_DEATH_CHILD], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let killed = false;
    child.stderr.on('data', (b: Buffer) => {
      stderr += b;
      if (!killed && stderr.includes('\nOPEN\n')) {
        va.killServer();
        killed = true;
      }
    });
    const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
    const report = stderr.match(/^RESULT (.*)$/m);
    assert.ok(report, `no result from the child (exit ${code ?? signal}): ${stderr.slice(-2000)}`);
    const result = JSON.parse(report[1]) as { inputError: string; outputError: string; closeMs: number; reopenError: string; stuck: boolean };
    assert.equal(signal, 'SIGKILL', `exit ${code}: the child must not crash before reporting`);
    assert.equal(result.stuck, true);
    assert.equal(result.inputError, 'ConfigError');
    assert.equal(result.outputError, 'ConfigError');
    assert.ok(result.closeMs < 1500, `close() took ${result.closeMs} ms`);
    assert.equal(result.reopenError, 'ConfigError');
  });
});


interface Collector {
  stop(): { samples: Int16Array; firstFrameMs: number; realTimeRatio: number };
}

/** Read frames every POLL_MS, as a call engine does, timing the arrivals. */
function startCollecting(input: AudioInput): Collector {
  const started = performance.now();
  const frames: Int16Array[] = [];
  let firstAt: number | undefined;
  const timer = setInterval(() => {
    for (let f = input.read(); f; f = input.read()) {
      firstAt ??= performance.now();
      frames.push(f);
    }
  }, POLL_MS);
  return {
    stop() {
      clearInterval(timer);
      const stoppedAt = performance.now();
      const samples = concat(frames);
      const first = firstAt ?? stoppedAt;
      // The first frame completes FRAME samples after the stream started delivering.
      const deliveringMs = stoppedAt - first + (FRAME / RATE) * 1000;
      return { samples, firstFrameMs: first - started, realTimeRatio: samples.length / ((deliveringMs * RATE) / 1000) };
    },
  };
}

/** Keep 40-60 ms queued, the way a call's playout feeds the speaker. */
async function playPaced(output: AudioOutput, pcm: Int16Array): Promise<void> {
  const target = (60 * RATE) / 1000;
  for (let offset = 0; offset < pcm.length; ) {
    while (output.queuedSamples() < target && offset < pcm.length) {
      output.write(pcm.subarray(offset, offset + FRAME));
      offset += FRAME;
    }
    await sleep(POLL_MS);
  }
  while (output.queuedSamples() > 0) await sleep(POLL_MS);
}

/** Write a click to the virtual mic's playback side and time it through its capture side. */
async function measureLoopLatency(): Promise<number> {
  const input = await openInput({ deviceId: 'virtmic', frameSamples: 240 });
  const output = await openOutput({ deviceId: 'virtmic' });
  try {
    await sleep(300);
    let received = drain(input).length;
    const writtenAt = received + input.available();
    output.write(new Int16Array(96).fill(20_000));
    const deadline = performance.now() + 1000;
    while (performance.now() < deadline) {
      await sleep(POLL_MS);
      const chunk = drain(input);
      const onset = chunk.findIndex((s) => Math.abs(s) > 10_000);
      if (onset >= 0) return ((received + onset - writtenAt) / RATE) * 1000;
      received += chunk.length;
    }
    throw new Error('the click never came back');
  } finally {
    await Promise.all([input.close(), output.close()]);
  }
}

/** From the start of openOutput() to the first written sound captured off the speaker. */
async function measureOpenToHeard(): Promise<number> {
  const monitor = await openInput({ deviceId: 'virtspeaker', frameSamples: 240 });
  try {
    await sleep(300);
    drain(monitor);
    const started = performance.now();
    const output = await openOutput({ deviceId: 'virtspeaker' });
    output.write(tone(1000, 200, 0.5));
    try {
      while (performance.now() - started < 1000) {
        await sleep(1);
        if (drain(monitor).some((s) => Math.abs(s) > 8_000)) return performance.now() - started;
      }
      throw new Error('nothing was heard');
    } finally {
      await output.close();
    }
  } finally {
    await monitor.close();
  }
}

function drain(input: AudioInput): Int16Array {
  const frames: Int16Array[] = [];
  for (let f = input.read(); f; f = input.read()) frames.push(f);
  return concat(frames);
}

/**
 * The tone must be present for its whole duration (no audio lost or duplicated; at most one
 * brief dropout, which a descheduled process on a loaded machine can cause), at the level it
 * was sent (RMS within 1 dB) and at its frequency.
 */
function assertTone(received: Int16Array, sent: Int16Array, freqHz: number, durationMs: number): string {
  const loud = loudBlocks(received, rms(sent) / 2);
  const first = loud.indexOf(true);
  const last = loud.lastIndexOf(true);
  assert.ok(first >= 0, 'tone not found');
  const loudMs = loud.filter(Boolean).length * BLOCK_MS;
  const silentMs = (last - first + 1) * BLOCK_MS - loudMs;
  assert.ok(Math.abs(loudMs - durationMs) <= 30, `tone lasted ${loudMs} ms, sent ${durationMs} ms`);
  assert.ok(silentMs <= 50, `${silentMs} ms of dropouts inside the tone`);
  // Measure a stretch away from the edges (partial blocks, PulseAudio's volume ramp).
  const middle = CAPTURE_SAMPLE_RATE / 4;
  const start = (first * BLOCK_MS * CAPTURE_SAMPLE_RATE) / 1000 + middle;
  const steady = received.subarray(start, start + middle);
  const levelDb = 20 * Math.log10(rms(steady) / rms(sent));
  assert.ok(Math.abs(levelDb) <= 1, `level off by ${levelDb.toFixed(2)} dB`);
  const measuredHz = dominantFrequency(steady, CAPTURE_SAMPLE_RATE);
  assert.ok(Math.abs(measuredHz - freqHz) <= 5, `dominant frequency ${measuredHz} Hz, sent ${freqHz} Hz`);
  return `tone ${loudMs} ms (${silentMs} ms dropouts), level ${levelDb.toFixed(2)} dB, ${measuredHz} Hz`;
}

/** For each BLOCK_MS block: is its RMS above `threshold`? */
function loudBlocks(samples: Int16Array, threshold: number): boolean[] {
  const block = (CAPTURE_SAMPLE_RATE * BLOCK_MS) / 1000;
  return Array.from({ length: Math.floor(samples.length / block) }, (_, b) => rms(samples.subarray(b * block, (b + 1) * block)) > threshold);
}

/** Frequency (1 Hz resolution, 50 Hz - 8 kHz) with the most energy, by a coarse-to-fine Goertzel scan. */
function dominantFrequency(samples: Int16Array, rate: number): number {
  const scan = (from: number, to: number, step: number) => {
    let bestHz = from;
    let bestPower = -1;
    for (let hz = from; hz <= to; hz += step) {
      const power = goertzelPower(samples, hz, rate);
      if (power > bestPower) [bestHz, bestPower] = [hz, power];
    }
    return bestHz;
  };
  const coarse = scan(50, 8000, 10);
  return scan(coarse - 10, coarse + 10, 1);
}

function goertzelPower(samples: Int16Array, hz: number, rate: number): number {
  const coeff = 2 * Math.cos((2 * Math.PI * hz) / rate);
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < samples.length; i++) {
    const s0 = samples[i] + coeff * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  return s1 * s1 + s2 * s2 - coeff * s1 * s2;
}

function concat(parts: Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
