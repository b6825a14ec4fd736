/**
 * Relay federation with separate relay processes on loopback (docs/federation.md): a global
 * room across a chain of three relays and of four, and a triangle, with one member on each
 * relay; every member gets every other member's datagrams exactly once (counted) and never
 * its own. A relay killed mid-call: the others keep talking locally, see its side leave, and
 * are whole again when it returns. Relays that are not trusted, or pin another fingerprint,
 * get no link; a relay listed as its own peer is skipped.
 *
 * Members are in-process RelaySessions sending numbered datagrams (the relays forward them
 * without reading them, as they do encrypted media).
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity, saveIdentity } from '../../core/crypto/identity.js';
import { hashRoomName } from '../../core/crypto/room-name.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { untagRoomDatagram } from '../../core/relay/rooms.js';
import { expectFingerprint, parseHostPort } from '../../core/transport/quic.js';
import type { KnownSignal } from '../../core/transport/signal-stream.js';
import { makeHome, startRelayProcess, type CliHome, type RunningRelay } from '../helpers/cli.js';
import { sleep, waitFor } from '../helpers/wait.js';

const ROOM_NAME = 'federation-test';
const ROOM = hashRoomName(ROOM_NAME);

interface RelayIdentity {
  path: string;
  fingerprint: string;
  port: number;
}

interface Member {
  session: RelaySession;
  sourceId: number;
  pushes: KnownSignal[];
  /** Members in the roster it last heard (its join answer, then room updates). */
  roster: number;
  /** Received datagrams: [source id as this member's relay names the sender, sender index, sequence]. */
  got: [number, number, number][];
}

async function freePort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function count(text: string, pattern: RegExp): number {
  return [...text.matchAll(new RegExp(pattern.source, 'g'))].length;
}

describe('federation across relay processes', () => {
  const homes: CliHome[] = [];
  const running: RunningRelay[] = [];
  const sessions: RelaySession[] = [];
  after(async () => {
    await Promise.all(sessions.map((s) => s.close().catch(() => undefined)));
    await Promise.all(running.map((r) => r.stop('SIGKILL')));
    for (const h of homes) h.cleanup();
  });

  async function identities(n: number): Promise<{ home: CliHome; ids: RelayIdentity[] }> {
    const home = makeHome('wzp-fed-');
    homes.push(home);
    const ids: RelayIdentity[] = [];
    for (let i = 0; i < n; i++) {
      const identity = generateIdentity();
      const path = join(home.dir, `relay-${i}.json`);
      await saveIdentity(path, identity);
      ids.push({ path, fingerprint: (await deriveTlsCertificate(identity.seed)).fingerprint, port: await freePort() });
    }
    return { home, ids };
  }

  /** Start relay `i` dialling `peers` and accepting links from `trusted` (indices into ids). */
  async function start(home: CliHome, ids: RelayIdentity[], i: number, peers: number[], trusted: number[], extra: string[] = []): Promise<RunningRelay> {
    const args = ['--listen', `127.0.0.1:${ids[i].port}`, '--identity', ids[i].path, '--global-room', ROOM_NAME, ...extra];
    for (const p of peers) args.push('--peer', `127.0.0.1:${ids[p].port}=${ids[p].fingerprint}`);
    for (const t of trusted) args.push('--trusted', ids[t].fingerprint);
    const relay = await startRelayProcess(args, home);
    running.push(relay);
    return relay;
  }

  /** Relays for these links ([dialler, acceptor] index pairs), waiting until every link is up. */
  async function federation(n: number, links: [number, number][]): Promise<{ home: CliHome; ids: RelayIdentity[]; relays: RunningRelay[] }> {
    const { home, ids } = await identities(n);
    const relays = await Promise.all(
      ids.map((_, i) =>
        start(
          home,
          ids,
          i,
          links.filter(([d]) => d === i).map(([, a]) => a),
          links.filter(([, a]) => a === i).map(([d]) => d),
        ),
      ),
    );
    const degree = (i: number) => links.filter(([d, a]) => d === i || a === i).length;
    await waitFor(() => relays.every((r, i) => count(r.stderr(), /federation:link-up/) >= degree(i)), 20_000);
    return { home, ids, relays };
  }

  async function member(relay: RunningRelay, index: number): Promise<Member> {
    const session = await RelaySession.open({ relay: parseHostPort(relay.address), verify: expectFingerprint(relay.fingerprint, 'relay') });
    sessions.push(session);
    const m: Member = { session, sourceId: 0, pushes: [], roster: 0, got: [] };
    session.onPush((p) => {
      m.pushes.push(p);
      if (p.type === 'room-update') m.roster = p.participants.length;
    });
    session.datagrams.onDatagram((d) => {
      const t = untagRoomDatagram(d);
      if (t && t.datagram.length === 3 && t.datagram[0] === 0xee) m.got.push([t.sourceId, t.datagram[1], t.datagram[2]]);
    });
    const joined = await session.joinRoom(ROOM, {});
    m.sourceId = joined.sourceId ?? 0;
    if (m.pushes.length === 0) m.roster = joined.participants.length;
    void index;
    return m;
  }

  const rosterSize = (m: Member): number => m.roster;

  /** Each member sends `n` numbered datagrams, paced; returns once all had time to arrive. */
  async function talk(members: Member[], senders: number[], n: number): Promise<void> {
    for (let k = 0; k < n; k++) {
      for (const i of senders) members[i].session.datagrams.send(Uint8Array.of(0xee, i, k));
      await sleep(5);
    }
  }

  /** Every member got every other sender's `n` datagrams exactly once, and none of its own. */
  function assertExactlyOnce(members: Member[], senders: number[], n: number, label: string): void {
    members.forEach((m, i) => {
      const seen = new Map<string, number>();
      for (const [, from, k] of m.got) seen.set(`${from}/${k}`, (seen.get(`${from}/${k}`) ?? 0) + 1);
      for (const s of senders) {
        if (s === i) {
          assert.equal(m.got.filter(([, from]) => from === i).length, 0, `${label}: member ${i} heard itself`);
          continue;
        }
        for (let k = 0; k < n; k++) assert.equal(seen.get(`${s}/${k}`), 1, `${label}: member ${i} got datagram ${k} of member ${s} ${seen.get(`${s}/${k}`) ?? 0} times`);
      }
      // One source id per sender, as this member's relay names them.
      const ids = new Map<number, number>();
      for (const [sid, from] of m.got) ids.set(from, sid);
      assert.equal(new Set(ids.values()).size, ids.size, `${label}: member ${i} sees distinct source ids`);
    });
  }

  async function groupCall(n: number, links: [number, number][], label: string): Promise<void> {
    const { relays } = await federation(n, links);
    const members: Member[] = [];
    for (let i = 0; i < n; i++) members.push(await member(relays[i], i));
    await waitFor(() => members.every((m) => rosterSize(m) === n), 10_000);
    const senders = members.map((_, i) => i);
    await talk(members, senders, 40);
    await waitFor(() => members.every((m) => m.got.length >= 40 * (n - 1)), 10_000).catch(() => undefined);
    await sleep(300);
    assertExactlyOnce(members, senders, 40, label);
  }

  test('a chain of three relays: each member hears the other two exactly once and not itself', async () => {
    await groupCall(3, [[1, 0], [1, 2]], 'chain of 3');
  });

  test('a chain of four relays', async () => {
    await groupCall(4, [[0, 1], [1, 2], [2, 3]], 'chain of 4');
  });

  test('a triangle: every datagram delivered exactly once', async () => {
    await groupCall(3, [[0, 1], [1, 2], [2, 0]], 'triangle');
  });

  test('the middle relay killed mid-call: the sides talk locally, see its side leave, and are whole again when it returns', async () => {
    // A (0) and C (2) accept links from B (1), which dials both: when B returns it relinks at once.
    const { home, ids, relays } = await federation(3, [[1, 0], [1, 2]]);
    const [a1, a2, b, c1] = [await member(relays[0], 0), await member(relays[0], 1), await member(relays[1], 2), await member(relays[2], 3)];
    const members = [a1, a2, b, c1];
    await waitFor(() => rosterSize(a1) === 4 && rosterSize(c1) === 4, 10_000);
    await talk(members, [0, 1, 2, 3], 10);
    await sleep(300);
    assertExactlyOnce(members, [0, 1, 2, 3], 10, 'before');

    await relays[1].stop('SIGKILL');
    // A and C notice the link is gone (QUIC idle timeout) and their members see B's and C's (A's) side leave.
    await waitFor(() => rosterSize(a1) === 2 && rosterSize(a2) === 2 && rosterSize(c1) === 1, 20_000);
    for (const m of members) m.got.length = 0;
    await talk(members, [0, 1, 3], 10);
    await sleep(300);
    assert.equal(a1.got.filter(([, from]) => from === 1).length, 10, 'A talks locally');
    assert.equal(a2.got.filter(([, from]) => from === 0).length, 10, 'A talks locally');
    assert.equal(a1.got.filter(([, from]) => from === 3).length, 0, 'nothing from C without B');
    assert.equal(c1.got.length, 0, 'nothing reaches C');

    const b2relay = await start(home, ids, 1, [0, 2], []);
    await waitFor(() => count(b2relay.stderr(), /federation:link-up/) >= 2, 20_000);
    const b2 = await member(b2relay, 2);
    const again = [a1, a2, b2, c1];
    await waitFor(() => rosterSize(a1) === 4 && rosterSize(c1) === 4, 10_000);
    for (const m of again) m.got.length = 0;
    await talk(again, [0, 1, 2, 3], 10);
    await sleep(300);
    assertExactlyOnce(again, [0, 1, 2, 3], 10, 'after');
  });

  test('no link for a relay that is not trusted, or that pins another fingerprint; a relay listed as its own peer is skipped', async () => {
    const { home, ids } = await identities(3);
    // 0 trusts nobody; 1 dials 0 (right fingerprint, not trusted); 2 dials 0 pinning 1's fingerprint; 0 lists itself.
    const r0 = await start(home, ids, 0, [0], []);
    const r1 = await start(home, ids, 1, [0], []);
    const r2 = await start(home, ids, 2, [], [], ['--peer', `127.0.0.1:${ids[0].port}=${ids[1].fingerprint}`]);
    await waitFor(() => /link-not-trusted/.test(r1.stderr()) && /federation:dial-failed/.test(r2.stderr()), 15_000);
    assert.match(r2.stderr(), /presented certificate .* expected/, 'the pin failed in the handshake');
    assert.match(r0.stderr(), /federation:refused.*link-not-trusted/);
    assert.equal(count(r0.stderr(), /federation:self-peer/), 1, 'its own entry is skipped, logged once');
    await sleep(1500);
    for (const r of [r0, r1, r2]) assert.equal(count(r.stderr(), /federation:link-up/), 0, 'no link came up');
    assert.equal(count(r1.stderr(), /federation:dial-failed/), 1, 'the same failure is logged once, not at every retry');
  });
});
