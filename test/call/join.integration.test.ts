/**
 * Joining a call: members admit each other from the announcements the relay hands on with the
 * join (notice and answer), and still from their broadcast announcements when the relay
 * predates that. Two in-process calls through an in-process relay on loopback; one talks a
 * tone, the other must hear it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { MAX_REFUSED_REPORTED, runCall, type CallReport } from '../../core/client/call.js';
import { RelaySession } from '../../core/client/relay-session.js';
import { sha256Fingerprint } from '../../core/crypto/fingerprint.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { hashRoomName } from '../../core/crypto/room-name.js';
import { RoomKeyring } from '../../core/crypto/sender-keys.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { createRegistries, type Registries } from '../../core/registry.js';
import { Relay } from '../../core/relay/relay.js';
import { MAX_ROOM_PARTICIPANTS } from '../../core/relay/rooms.js';
import { expectFingerprint } from '../../core/transport/quic.js';
import type { RoomCallSession } from '../../core/client/call-session.js';
import { forwardingSession } from '../helpers/call-session.js';

const PLUGINS = fileURLToPath(new URL('../../src/plugins/', import.meta.url));

async function registries(): Promise<Registries> {
  const r = createRegistries();
  for (const p of ['codec-opus', 'codec-pcm', 'codec-codec2', 'fec-none', 'fec-rs', 'fec-xor']) {
    const hook = (await import(join(PLUGINS, p, 'index.js'))).default as () => Promise<unknown[]>;
    for (const f of await hook()) (p.startsWith('codec') ? r.codecs : r.fec).register(f as never, p);
  }
  return r;
}

describe('joining a call', () => {
  let relay: Relay;
  let fingerprint: string;
  let reg: Registries;

  before(async () => {
    const tls = await deriveTlsCertificate(generateIdentity().seed);
    fingerprint = tls.fingerprint;
    // Join limits lifted: the ghost floods below test the clients, whatever a relay lets through.
    const unlimited = { joinBurst: 1e6, joinsPerMinute: 1e8, sourceJoinBurst: 1e6, sourceJoinsPerMinute: 1e8 };
    relay = await Relay.start({ listen: { host: '127.0.0.1', port: 0 }, tls, fingerprint, limits: unlimited });
    reg = await registries();
  });
  after(async () => {
    await relay.stop();
  });

  /**
   * A talks a 1 kHz tone for `talkMs` (3 s); B joins 0.5 s later and listens for `listenMs`
   * (2 s), while `during` runs. Returns B's report and the tone level it heard.
   */
  async function talkAndListen(
    room: string,
    during?: () => Promise<void>,
    { talkMs = 3000, listenMs = 2000, listenPastDuring = false, wrap = (s: RelaySession): RoomCallSession => s, seeded = false } = {},
  ): Promise<{ report: CallReport; heardRms: number; warnings: string[] }> {
    const [talkerId, listenerId] = [generateIdentity(), generateIdentity()];
    // As a 1:1 call has them (runDirectMedia): each side's first key, known to both, and only the other admitted.
    const [talkerKey, listenerKey] = [randomBytes(32), randomBytes(32)];
    const seededFor = (own: Uint8Array, peer: string, peerKey: Uint8Array) => (seeded ? { seededKeys: { own, peer, peerKey }, allow: [peer] } : {});
    const open = () => RelaySession.open({ relay: relay.address, verify: expectFingerprint(fingerprint, 'relay') });
    const [a, b] = [await open(), await open()];
    let phase = 0;
    const tone = {
      ended: false,
      read(n: number): Int16Array {
        const out = Int16Array.from({ length: n }, (_, i) => Math.round(8000 * Math.sin((2 * Math.PI * 1000 * (phase + i)) / 48000)));
        phase += n;
        return out;
      },
    };
    let sum = 0;
    let count = 0;
    const warnings: string[] = [];
    // With listenPastDuring, the listener hangs up only once `during` is over (and its last
    // messages had 500 ms to arrive), however long that takes on a busy machine.
    const hangUp = new AbortController();
    const talkerHangUp = new AbortController();
    const talker = runCall({
      session: wrap(a), identity: talkerId, room, alias: 'a', codecs: reg.codecs, fec: reg.fec, source: tone, durationMs: talkMs, adaptive: false,
      signal: talkerHangUp.signal,
      ...seededFor(talkerKey, listenerId.fingerprint, listenerKey),
    });
    await new Promise((r) => setTimeout(r, 500));
    const listening = runCall({
      session: wrap(b),
      identity: listenerId,
      room,
      alias: 'b',
      ...seededFor(listenerKey, talkerId.fingerprint, talkerKey),
      codecs: reg.codecs,
      fec: reg.fec,
      source: { ended: false, read: (n) => new Int16Array(n) },
      sink: {
        write(pcm) {
          for (const v of pcm) sum += v * v;
          count += pcm.length;
        },
        close() {},
      },
      durationMs: listenPastDuring ? 60_000 : listenMs,
      signal: hangUp.signal,
      adaptive: false,
      onEvent: (e) => {
        if (e.type === 'call:warning' || e.type === 'call:member-refused') warnings.push(e.message);
      },
    });
    await during?.();
    if (listenPastDuring) setTimeout(() => hangUp.abort(), 500);
    const report = await listening;
    if (listenPastDuring) talkerHangUp.abort();
    await talker;
    await a.close();
    await b.close();
    return { report, heardRms: Math.sqrt(sum / Math.max(1, count)), warnings };
  }

  test('members admit each other from the announcements the relay hands on with the join, without broadcasts', async () => {
    // Both members' broadcast announcements never reach the relay.
    let dropped = 0;
    const wrap = (s: RelaySession): RoomCallSession =>
      forwardingSession(s, {
        roomSignal: async (payload, to, opts) => {
          if (payload.kind === 'announce') {
            dropped++;
            return;
          }
          await s.roomSignal(payload, to, opts);
        },
      });
    const { report, heardRms } = await talkAndListen('join-with-announcement', undefined, { wrap });
    assert.ok(dropped >= 2, 'the broadcast announcements were dropped');
    assert.equal(report.participants.length, 1);
    assert.equal(report.participants[0].alias, 'a');
    assert.ok(report.participants[0].framesPlayed > 50, `played ${report.participants[0].framesPlayed} frames`);
    assert.ok(report.firstAudioMs !== undefined);
    // Most of 2 s of an 8000-amplitude tone (RMS ~5657) came out.
    assert.ok(heardRms > 3000, `heard RMS ${heardRms.toFixed(0)}`);
  });

  test("a 1:1 call's seeded first keys: the late joiner opens the talker's packets from the first, with no key wrapped", async () => {
    // The talker sent mini headers for 0.5 s before the listener came: it must start a header
    // context for the listener on admitting it, though no key rotation marks the moment.
    const { report, heardRms, warnings } = await talkAndListen('seeded-first-keys', undefined, { seeded: true });
    assert.deepEqual(warnings, []);
    assert.equal(report.keyRotations, 0);
    const [talker] = report.participants;
    assert.equal(talker.alias, 'a');
    assert.equal(talker.malformed, 0, 'mini headers without a context');
    assert.equal(talker.decryptRejected, 0);
    assert.ok(talker.framesPlayed > 50, `played ${talker.framesPlayed} frames`);
    assert.ok(heardRms > 3000, `heard RMS ${heardRms.toFixed(0)}`);
  });

  test('with a relay that predates announcements in joins, the broadcasts still admit everyone', async () => {
    // What an older relay does: no announcement goes with the join, none comes back in the answer.
    const wrap = (s: RelaySession): RoomCallSession =>
      forwardingSession(s, {
        joinRoom: async (room, opts = {}) => {
          const { announcement: _dropped, ...rest } = opts;
          const joined = await s.joinRoom(room, rest);
          delete joined.announcements;
          return joined;
        },
      });
    const { report, heardRms, warnings } = await talkAndListen('join-old-relay', undefined, { wrap });
    assert.equal(report.participants.length, 1);
    assert.ok(report.participants[0].framesPlayed > 50, `played ${report.participants[0].framesPlayed} frames`);
    assert.ok(heardRms > 3000, `heard RMS ${heardRms.toFixed(0)}`);
    assert.deepEqual(warnings, []);
  });

  test('a hostile member: wrapped keys from senders nobody announced are bounded, a replayed announcement is refused', async () => {
    const room = 'join-key-flood';
    const flooder = await RelaySession.open({ relay: relay.address, verify: expectFingerprint(fingerprint, 'relay') });
    const FLOOD = 100;
    try {
      const { report, heardRms, warnings } = await talkAndListen(room, async () => {
        await new Promise((r) => setTimeout(r, 300));
        const joined = await flooder.joinRoom(hashRoomName(room), { alias: 'flooder' });
        // Addressed to the listener exactly (its fingerprint and session, from its public
        // announcement), each from a sender nobody announced: kept until that announcement.
        // Members are found by the alias signed into their announcements (rosters carry none).
        const listenerEntry = joined.announcements?.find((e) => e.announcement.alias === 'b');
        const listener = joined.participants.find((p) => p.sourceId === listenerEntry?.sourceId);
        const announcement = listenerEntry?.announcement as { fingerprint: string; x25519PublicKey: string } | undefined;
        assert.ok(announcement, 'the relay handed on the listener\'s announcement');
        const b64 = (n: number) => Buffer.alloc(n, 7).toString('base64');
        for (let i = 0; i < FLOOD; i++) {
          const message = {
            from: sha256Fingerprint(randomBytes(32)),
            to: announcement.fingerprint,
            fromSession: b64(32),
            toSession: announcement.x25519PublicKey,
            epoch: i,
            wrapped: b64(48),
            signature: b64(64),
          };
          await flooder.roomSignal({ kind: 'key', message }, listener?.sourceId);
        }
        // Then it passes the talker's announcement off as its own and leaves: were that
        // session taken as the flooder's, the leave would retire it and silence the talker.
        const talkerSlot = joined.announcements?.find((e) => e.announcement.alias === 'a')?.sourceId;
        const talkerAnnouncement = joined.announcements?.find((e) => e.sourceId === talkerSlot)?.announcement;
        await flooder.roomSignal({ kind: 'announce', announcement: talkerAnnouncement }, listener?.sourceId);
        await new Promise((r) => setTimeout(r, 100));
        await flooder.close();
      }, { talkMs: 4500, listenMs: 3500 });
      const talker = report.participants.find((p) => p.alias === 'a');
      // ~175 frames in 3.5 s; with the talker's session retired by the flooder's leave (~1 s
      // in), ~50.
      assert.ok(talker && talker.framesPlayed > 140 && talker.decryptRejected === 0, JSON.stringify(report.participants));
      assert.ok(warnings.some((w) => /announced the session of member/.test(w)), warnings.join('\n'));
      assert.ok(heardRms > 3000, `heard RMS ${heardRms.toFixed(0)}`);
      // One kept per possible member; every one beyond that is dropped with a warning.
      const dropped = warnings.filter((w) => /dropped a wrapped key from .*no announcement/.test(w)).length;
      assert.equal(dropped, FLOOD - MAX_ROOM_PARTICIPANTS, warnings.slice(0, 3).join('\n'));
    } finally {
      await flooder.close().catch(() => undefined);
    }
  });

  test('refused members are listed up to 64 and counted beyond, each warned about once', async () => {
    const room = 'join-many-ghosts';
    const roomId = hashRoomName(room);
    const ghosts = await RelaySession.open({ relay: relay.address, verify: expectFingerprint(fingerprint, 'relay') });
    const GHOSTS = MAX_REFUSED_REPORTED + 6;
    const ids = Array.from({ length: GHOSTS }, () => generateIdentity());
    try {
      const { report, heardRms, warnings } = await talkAndListen(
        room,
        async () => {
          await new Promise((r) => setTimeout(r, 300));
          // Each joins with its own identity and a key that is not from the name, twice.
          for (const id of ids) {
            const keyring = new RoomKeyring(id, roomId, { admissionKey: new Uint8Array(32).fill(1), alias: 'a' });
            for (let i = 0; i < 2; i++) {
              await ghosts.joinRoom(roomId, { alias: 'a', fingerprint: id.fingerprint, announcement: { ...keyring.localAnnouncement() } });
              await ghosts.leave();
            }
          }
        },
        // The talker goes on until the listener has hung up (the ghosts' 280 requests take
        // 2-6 s, by the machine's load): the talker is still heard at the end.
        { talkMs: 30_000, listenPastDuring: true },
      );
      assert.equal(report.refused.length, MAX_REFUSED_REPORTED);
      assert.ok(report.refused.every((x) => x.reason === 'unproven' && x.times === 2 && x.alias === 'a'), JSON.stringify(report.refused[0]));
      assert.equal(report.refusedNotListed, 2 * (GHOSTS - MAX_REFUSED_REPORTED));
      const named = warnings.filter((w) => /^refused "a"/.test(w));
      assert.equal(named.length, MAX_REFUSED_REPORTED, warnings.slice(0, 2).join('\n'));
      assert.equal(warnings.filter((w) => /more than 64 members refused/.test(w)).length, 1);
      // None of them is a participant; the talker (whose alias they copied) still is, and heard.
      assert.deepEqual(report.participants.map((p) => p.alias), ['a']);
      assert.ok(heardRms > 3000, `heard RMS ${heardRms.toFixed(0)}`);
    } finally {
      await ghosts.close().catch(() => undefined);
    }
  });
});
