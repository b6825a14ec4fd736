/**
 * The relay's debug tap (core/relay/debug-tap.ts) on real calls through an in-process relay on
 * loopback: what a line says matches the stream that went through, nothing of a payload is in
 * it, the rate limit holds, malformed media is logged as such, and other rooms are not tapped.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { runCall } from '../../core/client/call.js';
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { hashRoomName } from '../../core/crypto/room-name.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { createRegistries, type Registries } from '../../core/registry.js';
import { describeDatagram, parseDebugTapTarget } from '../../core/relay/debug-tap.js';
import { Relay, type RelayEvent } from '../../core/relay/relay.js';
import { expectFingerprint } from '../../core/transport/quic.js';
import { encodeMediaPacket, QualityTier } from '../../core/wire/media-header.js';
import { encodeTrunk } from '../../core/wire/trunk.js';

const PLUGINS = fileURLToPath(new URL('../../src/plugins/', import.meta.url));
const OPUS_CODEC_ID = 1;

async function registries(): Promise<Registries> {
  const r = createRegistries();
  for (const p of ['codec-opus', 'codec-pcm', 'codec-codec2', 'fec-none', 'fec-rs', 'fec-xor']) {
    const hook = (await import(join(PLUGINS, p, 'index.js'))).default as () => Promise<unknown[]>;
    for (const f of await hook()) (p.startsWith('codec') ? r.codecs : r.fec).register(f as never, p);
  }
  return r;
}

/** Every key a tap line may have (anything else, a payload dump say, fails the test). */
const LINE_KEYS = new Set([
  'dir', 'room', 'src', 'to', 'path', 'size', 'kind', 'seq', 'ts', 'codec', 'tier', 'frameMs', 'fec', 'report', 'seqLow13',
  'fecBlockLow8', 'fecSymbol', 'repair', 'packets', 'entries', 'error', 'epoch', 'fanout', 'dropped', 'refused', 'suppressed',
]);

type Line = Record<string, unknown>;

function tone(): { ended: boolean; read(n: number): Int16Array } {
  let phase = 0;
  return {
    ended: false,
    read(n: number): Int16Array {
      const out = Int16Array.from({ length: n }, (_, i) => Math.round(8000 * Math.sin((2 * Math.PI * 440 * (phase + i)) / 48000)));
      phase += n;
      return out;
    },
  };
}

describe('relay debug tap', () => {
  let reg: Registries;
  const relays: Relay[] = [];

  before(async () => {
    reg = await registries();
  });
  after(async () => {
    await Promise.all(relays.map((r) => r.stop()));
  });

  async function startRelay(tap: string | undefined, linesPerSecond: number, lines: Line[], events: RelayEvent[]): Promise<{ relay: Relay; fingerprint: string }> {
    const tls = await deriveTlsCertificate(generateIdentity().seed);
    const relay = await Relay.start({
      listen: { host: '127.0.0.1', port: 0 },
      tls,
      fingerprint: tls.fingerprint,
      stun: false,
      onEvent: (e) => events.push(e),
      ...(tap === undefined ? {} : { debugTap: { target: parseDebugTapTarget(tap), linesPerSecond, write: (fields) => lines.push(JSON.parse(JSON.stringify(fields)) as Line) } }),
    });
    relays.push(relay);
    return { relay, fingerprint: tls.fingerprint };
  }

  async function call(relay: Relay, fingerprint: string, room: string, ms: number): Promise<void> {
    const open = (): Promise<RelaySession> => RelaySession.open({ relay: relay.address, verify: expectFingerprint(fingerprint, 'relay') });
    const [a, b] = [await open(), await open()];
    try {
      await Promise.all([
        runCall({ session: a, identity: generateIdentity(), room, alias: 'a', codecs: reg.codecs, fec: reg.fec, source: tone(), durationMs: ms, adaptive: false }),
        runCall({ session: b, identity: generateIdentity(), room, alias: 'b', codecs: reg.codecs, fec: reg.fec, source: tone(), durationMs: ms, adaptive: false }),
      ]);
    } finally {
      await a.close();
      await b.close();
    }
  }

  test('a call in the tapped room: lines name its members, their sequences go up, codec and tier are the stream\'s; other rooms and payloads stay out', async () => {
    const lines: Line[] = [];
    const events: RelayEvent[] = [];
    const { relay, fingerprint } = await startRelay('tap room', 100_000, lines, events);
    await Promise.all([call(relay, fingerprint, 'tap room', 2500), call(relay, fingerprint, 'another room', 2500)]);

    const tapped = hashRoomName('tap room');
    const members = new Set(events.flatMap((e) => (e.type === 'relay:join' && e.room === tapped && e.sourceId !== undefined ? [e.sourceId] : [])));
    assert.equal(members.size, 2);
    assert.ok(lines.length > 100, `${lines.length} lines`);
    for (const line of lines) {
      for (const key of Object.keys(line)) assert.ok(LINE_KEYS.has(key), `unexpected key ${key} in ${JSON.stringify(line)}`);
      assert.equal(line.room, tapped.slice(0, 8));
      assert.ok(members.has(line.src as number), `source ${String(line.src)}`);
      assert.ok(line.path === 'udp' || line.path === 'quic');
      assert.notEqual(line.kind, 'malformed', JSON.stringify(line));
    }
    const ins = lines.filter((l) => l.dir === 'in');
    const outs = lines.filter((l) => l.dir === 'out');
    assert.ok(ins.length > 50 && outs.length > 50, `${ins.length} in, ${outs.length} out`);
    for (const out of outs) assert.ok(members.has(out.to as number) && out.to !== out.src);
    // Both paths show up: media starts in QUIC datagrams and moves to the UDP path.
    assert.ok(ins.some((l) => l.path === 'udp'));
    for (const src of members) {
      const full = ins.filter((l) => l.src === src && l.kind === 'full');
      assert.ok(full.length >= 3, `${full.length} full headers from ${src}`);
      for (const l of full) {
        assert.equal(l.codec, OPUS_CODEC_ID);
        assert.equal(l.tier, 'GOOD');
        assert.equal(l.frameMs, 20);
        // 0 for the first packets of the member that joined first, before the other is in.
        assert.ok(l.fanout === 0 || l.fanout === 1, `fan-out ${String(l.fanout)}`);
      }
      assert.ok(full.some((l) => l.fanout === 1), `full headers forwarded to the other member from ${src}`);
      // Source packets' sequences go up (mod 2^16 for full headers, 2^13 for mini headers'
      // low bits; FEC repair packets carry their block's).
      const isRepair = (l: Line): boolean => (l.kind === 'full' ? (l.fec as { repair: boolean }).repair : l.repair === true);
      const seqs = ins.filter((l) => l.src === src && (l.kind === 'full' || l.kind === 'mini') && !isRepair(l)).map((l) => (l.kind === 'full' ? (l.seq as number) % 8192 : (l.seqLow13 as number)));
      let ups = 0;
      for (let i = 1; i < seqs.length; i++) if ((seqs[i] - seqs[i - 1] + 8192) % 8192 < 4096 && seqs[i] !== seqs[i - 1]) ups++;
      assert.ok(seqs.length > 20 && ups >= (seqs.length - 1) * 0.9, `sequences ${seqs.slice(0, 20).join(',')}`);
      assert.ok(ins.some((l) => l.src === src && isRepair(l)), 'FEC repair packets show as such');
    }
  });

  test('the rate limit holds on a busy room, and says how many lines it suppressed', async () => {
    const lines: Line[] = [];
    const { relay, fingerprint } = await startRelay('*', 10, lines, []);
    const started = performance.now();
    await call(relay, fingerprint, 'busy room', 2500);
    const seconds = (performance.now() - started) / 1000;
    // Burst of 10, then 10 a second.
    assert.ok(lines.length <= 10 + Math.ceil(10 * seconds) + 1, `${lines.length} lines in ${seconds.toFixed(1)} s`);
    assert.ok(lines.length >= 10);
    const suppressed = lines.reduce((n, l) => n + ((l.suppressed as number | undefined) ?? 0), 0);
    // 2 members x 50 packets/s, each an 'in' and an 'out' line, for the ~2 s of media.
    assert.ok(suppressed > 100, `suppressed ${suppressed}`);
  });

  test('malformed media in the tapped room is logged as such, forwarded as any datagram, and the relay keeps serving', async () => {
    const lines: Line[] = [];
    const { relay, fingerprint } = await startRelay('0123456789abcdef0123456789abcdef', 100_000, lines, []);
    const open = (): Promise<RelaySession> => RelaySession.open({ relay: relay.address, verify: expectFingerprint(fingerprint, 'relay'), mediaPath: 'quic' });
    const [a, b] = [await open(), await open()];
    try {
      await a.joinRoom('0123456789abcdef0123456789abcdef');
      await b.joinRoom('0123456789abcdef0123456789abcdef');
      const received: Uint8Array[] = [];
      b.datagrams.onDatagram((d) => received.push(d));
      const good = encodeMediaPacket(
        { version: 1, codecId: 7, tier: QualityTier.DEGRADED, sequence: 65535, timestamp: 1, frameSamples: 1920, fec: { schemeId: 0, block: 3, symbol: 1, repair: false, k: 0, r: 0 }, extensions: [] },
        Uint8Array.of(9, 0xaa, 0xbb, 0xcc),
      );
      const junk = [Uint8Array.of(0x00, 1, 2), Uint8Array.of(0xc0, 5), Uint8Array.of(0x10, 1), Uint8Array.of(0x85, 1), Uint8Array.of(0xff)];
      for (const d of [...junk, encodeTrunk([good, Uint8Array.of(0x81, 2, 3, 4, 5, 6)]), good]) a.datagrams.send(d);
      for (const deadline = performance.now() + 3000; received.length < junk.length + 2 && performance.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
      assert.equal(received.length, junk.length + 2, 'every datagram is forwarded, malformed or not');
      const ins = lines.filter((l) => l.dir === 'in');
      assert.equal(ins.filter((l) => l.kind === 'malformed').length, junk.length, JSON.stringify(ins));
      for (const l of ins.filter((x) => x.kind === 'malformed')) assert.match(String(l.error), /^(datagram|media-header|mini-header|trunk): /);
      const trunk = ins.find((l) => l.kind === 'trunk');
      assert.equal(trunk?.packets, 2);
      const full = ins.find((l) => l.kind === 'full');
      assert.deepEqual(
        { seq: full?.seq, codec: full?.codec, tier: full?.tier, frameMs: full?.frameMs, epoch: full?.epoch, size: full?.size },
        { seq: 65535, codec: 7, tier: 'DEGRADED', frameMs: 40, epoch: 9, size: good.length },
      );
      // Not one payload byte (0xaa 0xbb 0xcc) in any line.
      assert.ok(!JSON.stringify(lines).includes('170,187'));
      // Still serving: a ping answers.
      assert.ok((await a.ping()) >= 0);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('tap off: no lines; tap on another room: none either', async () => {
    const lines: Line[] = [];
    const off = await startRelay(undefined, 100_000, lines, []);
    await call(off.relay, off.fingerprint, 'quiet room', 1500);
    const other = await startRelay('some other room', 100_000, lines, []);
    await call(other.relay, other.fingerprint, 'quiet room', 1500);
    assert.equal(lines.length, 0);
  });
});

describe('debug tap target and datagram description', () => {
  test('--debug-tap values: *, a room id (any case), a name, name: prefix; empty is refused', () => {
    assert.deepEqual(parseDebugTapTarget('*'), { all: true });
    assert.deepEqual(parseDebugTapTarget('0123456789ABCDEF0123456789abcdef'), { room: '0123456789abcdef0123456789abcdef' });
    assert.deepEqual(parseDebugTapTarget('team'), { room: hashRoomName('team') });
    assert.deepEqual(parseDebugTapTarget('name:0123456789abcdef0123456789abcdef'), { room: hashRoomName('0123456789abcdef0123456789abcdef') });
    assert.throws(() => parseDebugTapTarget(''), { name: 'UsageError' });
    assert.throws(() => parseDebugTapTarget('name:'), { name: 'UsageError' });
  });

  test('a mini header without context: the sequence\'s low bits, block, symbol, repair flag', () => {
    // 10 R=1 seq 0x1234 | block low 0x56 | symbol 2 | crc | epoch 3 ...
    const d = Uint8Array.of(0x80 | 0x20 | 0x12, 0x34, 0x56, 2, 0x99, 3, 0, 0);
    assert.deepEqual(describeDatagram(d), { kind: 'mini', seqLow13: 0x1234, fecBlockLow8: 0x56, fecSymbol: 2, repair: true, epoch: 3 });
    assert.deepEqual(describeDatagram(Uint8Array.of(0x80, 1)), { kind: 'malformed', error: 'mini-header: truncated' });
    assert.deepEqual(describeDatagram(new Uint8Array(0)), { kind: 'malformed', error: 'datagram: truncated' });
  });
});
