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
import { readFileSync, writeFileSync } from 'node:fs';
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

  /**
   * Until every member has heard every other sender (routes settle a moment after the roster
   * is complete: a relay may first hear of a member over a longer path, and switching routes
   * may lose a datagram, never duplicate one), then forget what was heard.
   */
  async function warmUp(members: Member[], senders: number[]): Promise<void> {
    const heardAll = () => members.every((m, i) => senders.every((s) => s === i || m.got.some(([, from]) => from === s)));
    for (let k = 0; k < 150 && !heardAll(); k++) {
      for (const i of senders) members[i].session.datagrams.send(Uint8Array.of(0xee, i, 100 + k));
      await sleep(25);
    }
    assert.ok(heardAll(), 'every member hears every other sender');
    await sleep(300);
    // Even while routes settle, nothing arrives twice.
    members.forEach((m, i) => {
      const seen = new Set<string>();
      for (const [, from, k] of m.got) {
        assert.ok(!seen.has(`${from}/${k}`), `member ${i} got warm-up datagram ${k} of member ${from} twice`);
        seen.add(`${from}/${k}`);
      }
    });
    for (const m of members) m.got.length = 0;
  }

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
      // Each sender under one source id, the same on every relay: the one its own relay gave it.
      for (const [sid, from] of m.got) assert.equal(sid, members[from].sourceId, `${label}: member ${i} got member ${from}'s datagrams under ${sid}, not its id ${members[from].sourceId}`);
      assert.equal(new Set(members.map((x) => x.sourceId)).size, members.length, `${label}: the members' source ids are distinct`);
    });
  }

  async function groupCall(n: number, links: [number, number][], label: string): Promise<void> {
    const { relays } = await federation(n, links);
    await callAcross(relays, label);
  }

  /** One member on each relay; every member gets the others' datagrams exactly once. */
  async function callAcross(relays: RunningRelay[], label: string): Promise<void> {
    const n = relays.length;
    const members: Member[] = [];
    for (let i = 0; i < n; i++) members.push(await member(relays[i], i));
    await waitFor(() => members.every((m) => rosterSize(m) === n), 10_000);
    const senders = members.map((_, i) => i);
    await warmUp(members, senders);
    await talk(members, senders, 40);
    await waitFor(() => members.every((m) => m.got.length >= 40 * (n - 1)), 10_000).catch(() => undefined);
    await sleep(300);
    assertExactlyOnce(members, senders, 40, label);
  }

  test('three relays started from generated configs with pasted [[peers]] snippets carry a 3-relay group call', async () => {
    const paths: string[] = [];
    const started: RunningRelay[] = [];
    for (let i = 0; i < 3; i++) {
      const home = makeHome('wzp-fed-cfg-');
      homes.push(home);
      const path = join(home.dir, 'relay.toml');
      paths.push(path);
      const r = await startRelayProcess(['-c', path, '--listen', '127.0.0.1:0'], home);
      running.push(r);
      started.push(r);
      await waitFor(() => /created relay config/.test(r.stderr()), 10_000);
      (r as RunningRelay & { home: CliHome }).home = home;
    }
    await Promise.all(started.map((r) => r.stop('SIGKILL')));
    const texts = paths.map((p) => readFileSync(p, 'utf8'));
    const snippet = (text: string): string => {
      const lines = text.split('\n');
      const at = lines.indexOf('#   [[peers]]');
      assert.ok(at > 0, 'the generated config has a [[peers]] snippet');
      return lines.slice(at, at + 3).map((l) => l.replace(/^# {3}/, '')).join('\n');
    };
    const fingerprintOf = (text: string) => /^# {3}fingerprint = "(.*)"$/m.exec(text)?.[1] ?? '';
    const global = `\n[[global_rooms]]\nname = "${ROOM_NAME}"\n`;
    // B (1) dials A and C with their pasted snippets; A and C trust B.
    writeFileSync(paths[1], `${texts[1]}\n${snippet(texts[0])}\n\n${snippet(texts[2])}\n${global}`);
    for (const i of [0, 2]) writeFileSync(paths[i], `${texts[i]}\n[[trusted]]\nfingerprint = "${fingerprintOf(texts[1])}"\n${global}`);
    const relays: RunningRelay[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await startRelayProcess(['-c', paths[i]], (started[i] as RunningRelay & { home: CliHome }).home);
      running.push(r);
      relays.push(r);
    }
    await waitFor(() => count(relays[1].stderr(), /federation:link-up/) >= 2, 20_000);
    await callAcross(relays, 'from generated configs');
  });

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
    await warmUp(members, [0, 1, 2, 3]);
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
    await warmUp(again, [0, 1, 2, 3]);
    await talk(again, [0, 1, 2, 3], 10);
    await sleep(300);
    assertExactlyOnce(again, [0, 1, 2, 3], 10, 'after');
  });

  test('SIGHUP: a peer added to the config file is dialled at once, and unlinked when removed', async () => {
    const { home, ids } = await identities(2);
    await start(home, ids, 0, [], [1]);
    const path = join(home.dir, 'relay-1.toml');
    const base = `listen = "127.0.0.1:${ids[1].port}"\nidentity = "${ids[1].path}"\n\n[[global_rooms]]\nname = "${ROOM_NAME}"\n`;
    writeFileSync(path, base);
    const r1 = await startRelayProcess(['-c', path], home);
    running.push(r1);
    writeFileSync(path, `${base}\n[[peers]]\naddress = "127.0.0.1:${ids[0].port}"\nfingerprint = "${ids[0].fingerprint}"\n`);
    r1.child.kill('SIGHUP');
    await waitFor(() => /federation:link-up/.test(r1.stderr()), 10_000);
    assert.match(r1.stderr(), /relay:reload peers: 0 relays -> 1 relay \(1 added, 0 removed\)/);
    writeFileSync(path, base);
    r1.child.kill('SIGHUP');
    await waitFor(() => /federation:link-down/.test(r1.stderr()), 10_000);
    assert.doesNotMatch(r1.stderr(), /need a restart/);
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
