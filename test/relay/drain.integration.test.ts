/**
 * A draining relay over real QUIC on loopback (core/relay/relay.ts startDrain): every
 * connected client gets the drain notice once, new joins (room and echo) and registrations
 * are refused as `draining` and counted, the sessions in progress go on, and a client that
 * sends the relay a drain notice of its own is dropped and counted.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RelaySession } from '../../core/client/relay-session.js';
import { PresenceClient } from '../../core/client/presence.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { Relay, type RelayEvent } from '../../core/relay/relay.js';
import { expectFingerprint } from '../../core/transport/quic.js';
import type { KnownSignal } from '../../core/transport/signal-stream.js';
import { waitFor, sleep } from '../helpers/wait.js';

const ROOM = 'd'.repeat(32);

describe('relay draining', () => {
  let relay: Relay;
  let fingerprint: string;
  const events: RelayEvent[] = [];
  const open = () => RelaySession.open({ relay: relay.address, verify: expectFingerprint(fingerprint, 'relay') });

  before(async () => {
    const tls = await deriveTlsCertificate(generateIdentity().seed);
    fingerprint = tls.fingerprint;
    relay = await Relay.start({ listen: { host: '127.0.0.1', port: 0 }, tls, fingerprint, onEvent: (e) => events.push(e) });
  });
  after(() => relay.stop());

  test('the notice reaches every client once; new sessions are refused, the ones in progress go on', async () => {
    const member = await open();
    const other = await open();
    const idle = await open();
    const pushes = new Map<RelaySession, KnownSignal[]>([[member, []], [other, []], [idle, []]]);
    for (const [s, list] of pushes) s.onPush((m) => list.push(m));
    try {
      await member.joinRoom(ROOM);
      await other.joinRoom(ROOM);
      assert.equal(relay.draining, false);
      assert.equal(relay.sessionsInProgress, 2);
      const before = relay.metrics.refused.draining;

      relay.startDrain(5000);
      relay.startDrain(1); // once only
      assert.equal(relay.draining, true);
      await waitFor(() => [...pushes.values()].every((l) => l.some((m) => m.type === 'draining')));
      await sleep(100);
      for (const list of pushes.values()) assert.deepEqual(list.filter((m) => m.type === 'draining'), [{ type: 'draining', deadlineMs: 5000 }]);
      const notice = events.find((e) => e.type === 'relay:draining');
      assert.deepEqual(notice, { type: 'relay:draining', deadlineMs: 5000, connections: 3, sessions: 2 });

      // New sessions: a room join, an echo test, a registration.
      await assert.rejects(idle.joinRoom(ROOM), { name: 'RelayDrainingError', message: /is draining/ });
      await assert.rejects(idle.joinEcho(), { name: 'RelayDrainingError' });
      await assert.rejects(PresenceClient.register(idle, generateIdentity(), {}), { name: 'RelayDrainingError' });
      assert.equal(relay.metrics.refused.draining - before, 3);

      // The members in the room still reach each other (a room signal, and media).
      const relayed: KnownSignal[] = [];
      other.onPush((m) => relayed.push(m));
      await member.roomSignal({ hello: 1 });
      await waitFor(() => relayed.some((m) => m.type === 'relayed'));
      const got: Uint8Array[] = [];
      other.datagrams.onDatagram((d) => got.push(d));
      member.datagrams.send(new Uint8Array([1, 2, 3, 4]));
      await waitFor(() => got.length > 0);

      // Leaving ends the sessions; the relay has nothing left to wait for.
      await member.leave();
      await other.close();
      await waitFor(() => relay.sessionsInProgress === 0);
    } finally {
      for (const s of pushes.keys()) await s.close().catch(() => undefined);
    }
  });

  test('a drain notice sent to the relay is dropped and counted; the relay keeps serving', async () => {
    const c = await open();
    try {
      const before = relay.metrics.signalsUnknown;
      await assert.rejects(c.ask({ type: 'draining', deadlineMs: 1 }, { timeoutMs: 500 }));
      assert.equal(relay.metrics.signalsUnknown - before, 1);
      assert.ok((await c.ping()) >= 0);
    } finally {
      await c.close();
    }
  });
});
