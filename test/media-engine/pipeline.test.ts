/**
 * The media pipeline end to end in simulated time: FEC repairs lost frames into the jitter
 * buffer, VAD sends comfort-noise descriptions for silence and the receiver plays matching
 * noise, a late joiner decodes after a resync, and bad datagrams are dropped and counted;
 * read() on a 10 ms clock settles its delay by sub-frame compression with continuous output;
 * datagrams that overtake their key are held and opened when it comes.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DecryptError, MediaDecryptor, MediaEncryptor } from '../../core/crypto/media-crypto.js';
import { rms } from '../../core/media/analysis.js';
import { CALL_JITTER_OPTIONS, COMFORT_NOISE_CODEC_ID, FEC_COMFORT_NOISE_EXTENSION, MediaReceiver, MediaSender, type StreamSettings } from '../../core/media/pipeline.js';
import { Prng } from '../../core/media/prng.js';
import { datagramKind } from '../../core/wire/datagram.js';
import { decodeMediaHeader, encodeMediaHeader } from '../../core/wire/media-header.js';
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

  test('one FEC recovery teaches the playout what a loss anywhere in its block needs; a source packet that was only late teaches nothing', () => {
    // Groups of 8 frames: two interleaved blocks of 4, repairs sent with each group's last
    // frame. Frame 30 is the last position of its block (24, 26, 28, 30), frame 48 the first
    // of a later block (48, 50, 52, 54): the longest wait for a recovery.
    const run = (frame30: 'lost' | 'late') => {
      const sender = new MediaSender(settings);
      const receiver = new MediaReceiver({
        codecById: (id) => (id === pcm16Codec.codecId ? pcm16Codec : undefined),
        fecById: (id) => (id === rsFecScheme.schemeId ? rsFecScheme : undefined),
        jitter: CALL_JITTER_OPTIONS,
      });
      const delivered: { at: number; p: Uint8Array }[] = [];
      for (let i = 0; i < 80; i++) {
        sender.sendFrame(toneFrame(i)).forEach((p, n) => {
          if (n === 0 && i === 30) {
            // Late: it arrives after its group's repairs (sent at 620 ms) recovered it.
            if (frame30 === 'late') delivered.push({ at: 650, p });
            return;
          }
          if (n === 0 && i === 48 && frame30 === 'lost') return;
          delivered.push({ at: i * 20, p });
        });
      }
      delivered.sort((a, b) => a.at - b.at);
      const played = new Set<number>();
      let targetAt900 = Number.NaN;
      let next = 0;
      for (let t = 0; t < 80 * 20 + 400; t += 20) {
        while (next < delivered.length && delivered[next].at <= t) receiver.receive(delivered[next++].p, t);
        const chunk = receiver.pull(t);
        if (chunk.kind === 'frame' && chunk.seq !== undefined) played.add(chunk.seq);
        if (t === 900) targetAt900 = receiver.jitterStats().targetDelayMs;
      }
      return { played, targetAt900, recovered: receiver.stats.framesRecovered };
    };
    const lost = run('lost');
    assert.equal(lost.recovered, 2);
    // Recovering frame 30 (after a 20 ms wait) showed that a loss at its block's first
    // position would wait ~140 ms: the target covers it before frame 48 is lost.
    assert.ok(lost.targetAt900 > 120, `target ${lost.targetAt900} ms`);
    assert.ok(lost.played.has(48), 'frame 48 was recovered in time and played');
    const late = run('late');
    assert.ok(late.targetAt900 < 60, `a late packet is no loss: target ${late.targetAt900} ms`);
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

  test('a comfort-noise frame FEC recovers plays as comfort noise, not through the codec', () => {
    const sender = new MediaSender(settings, { vad: true });
    const receiver = receiverFor();
    const prng = new Prng(9);
    const noise = () => Int16Array.from({ length: 960 }, () => Math.round((prng.next() - 0.5) * 200));
    const out: Int16Array[] = [];
    let dropped = 0;
    let masks = 0;
    for (let i = 0; i < 160; i++) {
      sender.sendFrame(i < 40 ? toneFrame(i) : noise()).forEach((p, n) => {
        const full = datagramKind(p) === 'full' ? decodeMediaHeader(p).header : undefined;
        if (full?.fec.repair && full.extensions.some((e) => e.id === FEC_COMFORT_NOISE_EXTENSION)) masks++;
        // In the silence, lose one source packet (a SID) in every group of 8 frames.
        if (i >= 60 && n === 0 && i % 8 === 3 && !full?.fec.repair) {
          dropped++;
          return;
        }
        receiver.receive(p, i * 20);
      });
      out.push(receiver.pull(i * 20).pcm);
    }
    assert.ok(dropped >= 10 && masks > 0, `dropped ${dropped}, repair packets with a comfort-noise mask ${masks}`);
    assert.ok(receiver.stats.framesRecovered >= dropped - 2, `recovered ${receiver.stats.framesRecovered} of ${dropped}`);
    assert.equal(receiver.stats.decodeErrors, 0, 'no SID went to the PCM decoder');
    const expected = rms(noise());
    for (const [i, frame] of out.entries()) {
      if (i < 100) continue;
      const level = rms(frame);
      assert.ok(level > expected / 3 && level < expected * 3, `frame ${i}: RMS ${level.toFixed(1)} vs background ${expected.toFixed(1)}`);
    }
  });

  test('a receiver joining mid-stream decodes once the sender resyncs (the mini headers before it too), and garbage is counted', () => {
    const sender = new MediaSender({ ...settings, r: 0, k: 1, depth: 1 });
    for (let i = 0; i < 10; i++) sender.sendFrame(toneFrame(i)); // the late joiner missed these
    const receiver = receiverFor();
    for (let i = 10; i < 13; i++) for (const p of sender.sendFrame(toneFrame(i))) receiver.receive(p, i * 20);
    assert.equal(receiver.stats.framesReceived, 0, 'mini headers without context wait for one');
    assert.equal(receiver.stats.malformed, 0, 'they are not malformed: the sender has not met us yet');
    sender.resync();
    for (let i = 13; i < 20; i++) for (const p of sender.sendFrame(toneFrame(i))) receiver.receive(p, i * 20);
    assert.equal(receiver.stats.framesReceived, 10, 'the first full header expands the 3 mini headers before it');
    receiver.receive(new Uint8Array([0xff, 1, 2]), 400);
    receiver.receive(new Uint8Array(0), 400);
    assert.equal(receiver.stats.malformed, 2);
  });

  test('mini headers before any context are kept within bounds: beyond MAX_CONTEXTLESS they count as malformed; later a lost context is malformed as ever', () => {
    const sender = new MediaSender({ ...settings, r: 0, k: 1, depth: 1 });
    for (let i = 0; i < 10; i++) sender.sendFrame(toneFrame(i));
    const receiver = receiverFor();
    for (let i = 10; i < 30; i++) for (const p of sender.sendFrame(toneFrame(i))) receiver.receive(p, i * 20);
    assert.equal(receiver.stats.malformed, 12, '8 kept, the other 12 counted');
    sender.resync();
    for (const p of sender.sendFrame(toneFrame(30))) receiver.receive(p, 600);
    assert.equal(receiver.stats.framesReceived, 9, 'the full header and the 8 kept');
    // With a context, a mini header that does not match it is malformed (not kept).
    let mini: Uint8Array | undefined;
    for (let i = 31; i < 40 && !mini; i++) mini = sender.sendFrame(toneFrame(i)).find((p) => datagramKind(p) === 'mini');
    assert.ok(mini);
    const corrupt = Uint8Array.from(mini);
    corrupt[4] ^= 0xff; // its CRC
    receiver.receive(corrupt, 800);
    assert.equal(receiver.stats.malformed, 13);
  });

  test('read() on a 10 ms clock: exact periods, the first frame located, delay settled by seamless sub-frame compression', () => {
    const plain = { ...settings, r: 0, k: 1, depth: 1 };
    const sender = new MediaSender(plain);
    const receiver = new MediaReceiver({
      codecById: (id) => (id === pcm16Codec.codecId ? pcm16Codec : undefined),
      fecById: (id) => (id === rsFecScheme.schemeId ? rsFecScheme : undefined),
      jitter: CALL_JITTER_OPTIONS,
    });
    // A continuous 440 Hz tone (a frame is not a whole number of its periods, so a dropped
    // or repeated frame would show as a jump). The first 8 frames come 15 ms late, as after
    // a start-up stall; afterwards the buffer holds 15 ms it does not need.
    const tone = (i: number) => Int16Array.from({ length: 960 }, (_, n) => Math.round(8000 * Math.sin((2 * Math.PI * 440 * (i * 960 + n)) / 48000)));
    const deliveries: { at: number; p: Uint8Array }[] = [];
    for (let i = 0; i < 150; i++) for (const p of sender.sendFrame(tone(i))) deliveries.push({ at: i * 20 + 30 + (i < 8 ? 15 : 0), p });
    deliveries.sort((a, b) => a.at - b.at);
    const out: Int16Array[] = [];
    const starts: number[] = [];
    let next = 0;
    for (let t = 3; t < 150 * 20 + 30; t += 10) {
      while (next < deliveries.length && deliveries[next].at <= t) receiver.receive(deliveries[next].p, deliveries[next++].at);
      const r = receiver.read(t, 480);
      assert.equal(r.pcm.length, 480);
      if (r.frameStartOffset !== undefined) starts.push(out.length * 480 + r.frameStartOffset);
      out.push(r.pcm);
    }
    const all = Int16Array.from(out.flatMap((x) => [...x]));
    const first = starts[0];
    assert.ok(all.subarray(0, first).every((v) => v === 0), 'silence before the first frame');
    // (pcm16's resamplers delay the tone by ~6 ms: the first frame starts with their silence.)
    assert.ok(rms(all.subarray(first, first + 960)) > 1000, 'the first frame plays at its offset');
    const played = all.subarray(first + 960, starts.at(-1));
    let step = 0;
    for (let i = 1; i < played.length; i++) step = Math.max(step, Math.abs(played[i] - played[i - 1]));
    const toneStep = 8000 * Math.sin((2 * Math.PI * 440) / 48000);
    assert.ok(step <= toneStep * 1.05 + 2, `largest step ${step} vs the tone's ${toneStep.toFixed(0)}`);
    const jb = receiver.jitterStats();
    assert.ok(jb.removedSamplesForAcceleration >= 480, `compressed ${jb.removedSamplesForAcceleration} samples`);
    assert.equal(jb.concealedSamples, 0);
    assert.ok(jb.currentDelayMs < jb.targetDelayMs + 11, `delay ${jb.currentDelayMs} vs target ${jb.targetDelayMs}`);
    assert.equal(receiver.stats.framesPlayed, starts.length);
  });

  test('datagrams sealed with a key still on its way are held, then opened when it arrives; stale or forged ones are rejected', () => {
    const context = { roomId: 'r'.repeat(32), senderFingerprint: 'sender' };
    const encryptor = new MediaEncryptor(context);
    const decryptor = new MediaDecryptor(context);
    const key = encryptor.rotate();
    const keyCopy = { epoch: key.epoch, key: key.key.slice() };
    const sender = new MediaSender({ ...settings, r: 0, k: 1, depth: 1 }, { seal: (h, p) => encryptor.seal(h, p) });
    const receiver = new MediaReceiver({
      open: (h, sealed) => decryptor.open(h, sealed),
      isKeyPending: (err) => err instanceof DecryptError && err.reason === 'unknown-epoch',
      codecById: (id) => (id === pcm16Codec.codecId ? pcm16Codec : undefined),
      fecById: (id) => (id === rsFecScheme.schemeId ? rsFecScheme : undefined),
    });
    const packets = Array.from({ length: 6 }, (_, i) => sender.sendFrame(toneFrame(i))[0]);
    receiver.receive(packets[0], 0); // will be too old when the key comes
    for (let i = 1; i < 4; i++) receiver.receive(packets[i], 1000 + i * 20);
    const forged = packets[4].slice();
    forged[forged.length - 1] ^= 1;
    assert.equal(receiver.stats.held, 4);
    assert.equal(receiver.stats.framesReceived, 0);
    decryptor.install(keyCopy);
    receiver.receive(forged, 1090); // a current epoch but a bad tag: rejected, not held
    receiver.retryHeld(1100);
    assert.equal(receiver.stats.framesReceived, 3, 'the three recent held datagrams are played');
    assert.equal(receiver.stats.rejected, 2, 'the stale one and the forged one');
    receiver.receive(packets[5], 1120);
    assert.equal(receiver.stats.framesReceived, 4);
    receiver.retryHeld(1200); // nothing left
    assert.equal(receiver.stats.rejected, 2);
  });

  test('a new key starts a new header context: a member given only the key that admitted it reads from its first packet', () => {
    const context = { roomId: 'r'.repeat(32), senderFingerprint: 'sender' };
    const encryptor = new MediaEncryptor(context);
    encryptor.rotate(); // the key from before the newcomer, which it is never given
    const sender = new MediaSender({ ...settings, r: 0, k: 1, depth: 1 }, { seal: (h, p) => encryptor.seal(h, p), keyEpoch: () => encryptor.epoch });
    const decryptor = new MediaDecryptor(context);
    const receiver = new MediaReceiver({
      open: (h, sealed) => decryptor.open(h, sealed),
      isKeyPending: (err) => err instanceof DecryptError && err.reason === 'unknown-epoch',
      codecById: (id) => (id === pcm16Codec.codecId ? pcm16Codec : undefined),
      fecById: (id) => (id === rsFecScheme.schemeId ? rsFecScheme : undefined),
    });
    for (let i = 0; i < 8; i++) sender.sendFrame(toneFrame(i)); // before it joined
    // Admitted, while the rotation for it waits for the pace: what comes under the old key
    // (full headers and then mini ones) reaches it but never opens.
    for (let i = 8; i < 14; i++) for (const p of sender.sendFrame(toneFrame(i))) receiver.receive(p, i * 20);
    assert.equal(receiver.stats.held, 6);
    decryptor.install(encryptor.rotate());
    const underNewKey = Array.from({ length: 10 }, (_, i) => sender.sendFrame(toneFrame(14 + i))[0]);
    assert.equal(datagramKind(underNewKey[0]), 'full', 'the first packet under the new key carries a full header');
    underNewKey.forEach((p, i) => receiver.receive(p, (14 + i) * 20));
    assert.equal(receiver.stats.malformed, 0, 'every mini header under the new key expands');
    assert.equal(receiver.stats.framesReceived, 10);
  });

  test('forged full headers are rejected without displacing the mini-header contexts', () => {
    const context = { roomId: 'r'.repeat(32), senderFingerprint: 'sender' };
    const encryptor = new MediaEncryptor(context);
    const decryptor = new MediaDecryptor(context);
    decryptor.install(encryptor.rotate());
    const sender = new MediaSender({ ...settings, r: 0, k: 1, depth: 1 }, { seal: (h, p) => encryptor.seal(h, p) });
    const receiver = new MediaReceiver({
      open: (h, sealed) => decryptor.open(h, sealed),
      codecById: (id) => (id === pcm16Codec.codecId ? pcm16Codec : undefined),
      fecById: (id) => (id === rsFecScheme.schemeId ? rsFecScheme : undefined),
    });
    const packets = Array.from({ length: 12 }, (_, i) => sender.sendFrame(toneFrame(i))[0]);
    assert.equal(datagramKind(packets[0]), 'full');
    assert.ok(packets.slice(4).every((p) => datagramKind(p) === 'mini'), 'steady state: mini headers');
    for (let i = 0; i < 4; i++) receiver.receive(packets[i], i * 20);
    // Two full headers with other fields (as a relay could inject): each would become a
    // context if headers were trusted before the packet opened, and two push out the real one.
    const { header, headerLength } = decodeMediaHeader(packets[0]);
    for (const codecId of [header.codecId + 1, header.codecId + 2]) {
      const forged = encodeMediaHeader({ ...header, codecId });
      receiver.receive(Uint8Array.from([...forged, ...packets[0].subarray(headerLength)]), 90);
    }
    assert.equal(receiver.stats.rejected, 2);
    for (let i = 4; i < 12; i++) receiver.receive(packets[i], i * 20);
    assert.equal(receiver.stats.malformed, 0, 'every genuine mini header still expands');
    assert.equal(receiver.stats.framesReceived, 12);
  });
});
