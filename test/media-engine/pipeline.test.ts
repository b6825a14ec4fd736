/**
 * The media pipeline end to end in simulated time: FEC repairs lost frames into the jitter
 * buffer, VAD sends comfort-noise descriptions for silence and the receiver plays matching
 * noise, a late joiner decodes after a resync, and bad datagrams are dropped and counted.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { rms } from '../../core/media/analysis.js';
import { COMFORT_NOISE_CODEC_ID, MediaReceiver, MediaSender, type StreamSettings } from '../../core/media/pipeline.js';
import { Prng } from '../../core/media/prng.js';
import { datagramKind } from '../../core/wire/datagram.js';
import { decodeMediaHeader } from '../../core/wire/media-header.js';
import { pcm16Codec } from '../../src/plugins/codec-pcm/index.js';
import { rsFecScheme } from '../../src/plugins/fec-rs/index.js';

const settings: StreamSettings = { tier: 0, codec: pcm16Codec, frameMs: 20, fec: rsFecScheme, k: 4, r: 2, depth: 2 };
const receiverFor = () =>
  new MediaReceiver({
    codecById: (id) => (id === pcm16Codec.codecId ? pcm16Codec : undefined),
    fecById: (id) => (id === rsFecScheme.schemeId ? rsFecScheme : undefined),
  });

function toneFrame(i: number, amplitude = 8000): Int16Array {
  return Int16Array.from({ length: 960 }, (_, n) => Math.round(amplitude * Math.sin((2 * Math.PI * 500 * (i * 960 + n)) / 48000)));
}

describe('media pipeline', () => {
  test('FEC recovers lost source frames and they are played, not concealed', () => {
    const sender = new MediaSender(settings);
    const receiver = receiverFor();
    let dropped = 0;
    const delivered: { at: number; p: Uint8Array }[] = [];
    for (let i = 0; i < 80; i++) {
      sender.sendFrame(toneFrame(i)).forEach((p, n) => {
        // Drop one source packet in every group of 8 frames (repairs always arrive).
        if (n === 0 && i % 8 === 3 && datagramKind(p) !== 'full') {
          dropped++;
          return;
        }
        delivered.push({ at: i * 20, p });
      });
    }
    assert.ok(dropped >= 9);
    const concealedAt: number[] = [];
    let next = 0;
    for (let t = 0; t < 80 * 20 + 400; t += 20) {
      while (next < delivered.length && delivered[next].at <= t) receiver.receive(delivered[next++].p, t);
      if (receiver.pull(t).kind === 'conceal') concealedAt.push(t);
    }
    assert.equal(receiver.stats.framesRecovered, dropped);
    assert.equal(receiver.stats.malformed, 0);
    // Once the jitter buffer has seen recovered frames arrive late, its target covers the
    // recovery delay: from the first second to the end of the stream nothing is concealed.
    const late = concealedAt.filter((t) => t > 1000 && t < 80 * 20);
    assert.deepEqual(late, [], `concealed at ${concealedAt.join(', ')} ms`);
  });

  test('with VAD, silence goes as tiny comfort-noise descriptions and plays as noise at its level', () => {
    const sender = new MediaSender({ ...settings, r: 0, k: 1, depth: 1 }, { vad: true });
    const receiver = receiverFor();
    const prng = new Prng(5);
    const noise = () => Int16Array.from({ length: 960 }, () => Math.round((prng.next() - 0.5) * 200));
    const out: Int16Array[] = [];
    let sidBytes = 0;
    for (let i = 0; i < 150; i++) {
      const frame = i < 50 ? toneFrame(i) : noise();
      for (const p of sender.sendFrame(frame)) {
        if (datagramKind(p) === 'full' && decodeMediaHeader(p).header.codecId === COMFORT_NOISE_CODEC_ID) sidBytes = Math.max(sidBytes, p.length);
        receiver.receive(p, i * 20);
      }
      out.push(receiver.pull(i * 20).pcm);
    }
    assert.ok(sender.stats.silentFrames > 80, `silent frames ${sender.stats.silentFrames}`);
    assert.ok(sidBytes > 0 && sidBytes < 40, `SID packets of ${sidBytes} bytes`);
    const tail = out.slice(120);
    const level = rms(Int16Array.from(tail.flatMap((f) => [...f])));
    const expected = rms(noise());
    assert.ok(level > expected / 2 && level < expected * 2, `comfort noise RMS ${level.toFixed(1)} vs background ${expected.toFixed(1)}`);
  });

  test('a receiver joining mid-stream decodes once the sender resyncs, and garbage is counted', () => {
    const sender = new MediaSender({ ...settings, r: 0, k: 1, depth: 1 });
    for (let i = 0; i < 10; i++) sender.sendFrame(toneFrame(i)); // the late joiner missed these
    const receiver = receiverFor();
    for (let i = 10; i < 13; i++) for (const p of sender.sendFrame(toneFrame(i))) receiver.receive(p, i * 20);
    assert.equal(receiver.stats.framesReceived, 0, 'mini headers without context are dropped');
    sender.resync();
    for (let i = 13; i < 20; i++) for (const p of sender.sendFrame(toneFrame(i))) receiver.receive(p, i * 20);
    assert.equal(receiver.stats.framesReceived, 7);
    receiver.receive(new Uint8Array([0xff, 1, 2]), 400);
    receiver.receive(new Uint8Array(0), 400);
    assert.equal(receiver.stats.malformed, 5);
  });
});
