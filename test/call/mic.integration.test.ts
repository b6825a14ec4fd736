/**
 * `wzp call --mic` end to end through real PortAudio (naudiodon over ALSA's PulseAudio plugin)
 * with a virtual, real-time-clocked microphone and speaker: what is "said" into the virtual
 * microphone reaches the far end, and what the far end sends comes out of the virtual speaker.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeWav } from '../../core/media/wav.js';
import { makeHome, parseJsonDocument, runCli, startRelayProcess, type CliHome, type RunningRelay } from '../helpers/cli.js';
import { startVirtualAudio, virtualAudioSkipReason, type VirtualAudio } from '../helpers/virtual-audio.js';

/**
 * SNR of a tone at f in the last `seconds` of pcm, dB: the tone's power against everything
 * else, measured in 100 ms blocks (f a multiple of 10 Hz: whole cycles in every block)
 * and summed. Per block, so that what a receiver legitimately does to a stream (time
 * stretching, a concealed frame) only costs the blocks it touches: one transform over 3 s
 * counts any phase shift against the whole tone.
 */
function toneSnrDb(pcm: Int16Array, f: number, seconds: number): number {
  const block = 4800;
  const n = Math.min(pcm.length, 48000 * seconds);
  const x = pcm.subarray(pcm.length - n);
  const w = (2 * Math.PI * f) / 48000;
  let tone = 0;
  let total = 0;
  for (let start = 0; start + block <= n; start += block) {
    let re = 0;
    let im = 0;
    for (let i = 0; i < block; i++) {
      const v = x[start + i];
      re += v * Math.cos(w * i);
      im += v * Math.sin(w * i);
      total += v * v;
    }
    tone += (2 * (re * re + im * im)) / block;
  }
  return 10 * Math.log10(tone / Math.max(1e-9, total - tone));
}

function tone(hz: number, seconds: number, amplitude = 0.4): Int16Array {
  return Int16Array.from({ length: 48000 * seconds }, (_, i) => Math.round(amplitude * 32767 * Math.sin((2 * Math.PI * hz * i) / 48000)));
}

const skip = virtualAudioSkipReason();

describe('wzp call --mic through PortAudio and virtual devices', { skip }, () => {
  let audio: VirtualAudio;
  let relayHome: CliHome;
  let relay: RunningRelay;
  const homes: CliHome[] = [];

  before(async () => {
    audio = await startVirtualAudio();
    relayHome = makeHome('wzp-relay-');
    relay = await startRelayProcess(['--listen', '127.0.0.1:0'], relayHome);
  });
  after(async () => {
    await relay?.stop('SIGKILL');
    relayHome?.cleanup();
    for (const h of homes) h.cleanup();
    await audio?.stop();
  });

  test('--list-devices shows the devices PortAudio reaches, with the defaults marked', async () => {
    const home = makeHome('wzp-devices-');
    homes.push(home);
    home.env = { ...home.env, ...audio.env };
    const r = await runCli(['call', '--list-devices'], home);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    for (const name of ['virtmic', 'virtspeaker']) assert.ok(lines.some((l) => l.includes(`  ${name}  (in `)), r.stdout);
    assert.equal(lines.filter((l) => l.includes('default input')).length, 1, r.stdout);
    assert.equal(lines.filter((l) => l.includes('default output')).length, 1, r.stdout);
  });

  test('the far end hears the microphone, and the speaker plays the far end', async () => {
    const near = makeHome('wzp-near-');
    const far = makeHome('wzp-far-');
    homes.push(near, far);
    near.env = { ...near.env, ...audio.env };
    const farWav = join(far.dir, 'far-heard.wav');
    const common = ['--room', 'mic-test', '--relay-fingerprint', relay.fingerprint, '--json'];
    const farCall = runCli(['call', relay.address, '--tone', '1000', '--duration', '12', '--no-playback', '--record', farWav, ...common], far, 60_000);
    await new Promise((r) => setTimeout(r, 1000));
    const nearCall = runCli(['call', relay.address, '--mic', '--duration', '10', '--alias', 'near', ...common], near, 60_000);
    await new Promise((r) => setTimeout(r, 2500));
    // Speak 440 Hz into the virtual microphone while listening to the virtual speaker.
    const [, heard] = await Promise.all([audio.inject(tone(440, 5), 48000), audio.captureSpeaker(4000)]);
    const [rn, rf] = await Promise.all([nearCall, farCall]);
    assert.equal(rn.code, 0, rn.stderr);
    assert.equal(rf.code, 0, rf.stderr);
    const nearReport = parseJsonDocument(rn).result as any;
    assert.ok(nearReport.participants[0]?.framesPlayed > 100, JSON.stringify(nearReport.participants));

    // The speaker got what the far end sent: its 1 kHz tone, clearly.
    const speakerSnr = toneSnrDb(heard, 1000, 3);
    assert.ok(speakerSnr > 10, `virtual speaker: 1 kHz at ${speakerSnr.toFixed(1)} dB SNR; near end's report: ${JSON.stringify(nearReport)}`);
    // The far end received the injected microphone audio.
    const recording = decodeWav(readFileSync(farWav)).samples;
    const best = Math.max(...[0, 1, 2, 3, 4, 5, 6].map((s) => toneSnrDb(recording.subarray(0, recording.length - s * 48000), 440, 2)));
    assert.ok(best > 10, `far end: 440 Hz from the microphone at ${best.toFixed(1)} dB SNR`);
  });

  test('echo-test --mic: what is said into the microphone comes back out of the speaker', async () => {
    const home = makeHome('wzp-echo-mic-');
    homes.push(home);
    home.env = { ...home.env, ...audio.env };
    const echo = runCli(['echo-test', relay.address, '--mic', '--duration', '6', '--relay-fingerprint', relay.fingerprint, '--json'], home, 60_000);
    await new Promise((r) => setTimeout(r, 2000));
    const [, heard] = await Promise.all([audio.inject(tone(440, 4), 48000), audio.captureSpeaker(3500)]);
    const r = await echo;
    assert.equal(r.code, 0, r.stderr);
    const report = parseJsonDocument(r).result as { packetsReceived: number; lossPct: number; concealedPct: number };
    assert.ok(report.packetsReceived >= 250, JSON.stringify(report));
    const snr = toneSnrDb(heard, 440, 2);
    assert.ok(snr > 10, `virtual speaker: the echoed 440 Hz at ${snr.toFixed(1)} dB SNR; report: ${JSON.stringify(report)}`);
  });
});
