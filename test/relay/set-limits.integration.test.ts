/**
 * Relay.setLimits over real QUIC on loopback: a limit raised or lowered applies at once, to
 * open connections too (their token buckets take the new rates), the gate's limits follow,
 * and a bad value changes nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { DEFAULT_RELAY_LIMITS, type RelayLimits } from '../../core/relay/limits.js';
import { Relay } from '../../core/relay/relay.js';
import { expectFingerprint } from '../../core/transport/quic.js';

const ROOM = 'c'.repeat(32);

describe('Relay.setLimits', () => {
  let relay: Relay;
  let fingerprint: string;
  const open: RelaySession[] = [];

  before(async () => {
    const tls = await deriveTlsCertificate(generateIdentity().seed);
    fingerprint = tls.fingerprint;
    relay = await Relay.start({ listen: { host: '127.0.0.1', port: 0 }, tls, fingerprint, limits: { roomSize: 2 } });
  });
  after(async () => {
    await Promise.all(open.map((s) => s.close().catch(() => undefined)));
    await relay.stop();
  });

  async function session(timeoutMs?: number): Promise<RelaySession> {
    const s = await RelaySession.open({ relay: relay.address, verify: expectFingerprint(fingerprint, 'relay'), ...(timeoutMs ? { timeoutMs } : {}) });
    open.push(s);
    return s;
  }

  test('room size: the third member is refused at 2, admitted once it is 3', async () => {
    const [a, b, c] = [await session(), await session(), await session()];
    await a.joinRoom(ROOM, { alias: 'a' });
    await b.joinRoom(ROOM, { alias: 'b' });
    await assert.rejects(c.joinRoom(ROOM, { alias: 'c' }), (err: Error) => err.name === 'RefusedError' && /room is full \(2 members\)/.test(err.message));
    assert.deepEqual(relay.setLimits({ roomSize: 3 }), ['roomSize']);
    assert.equal(relay.currentLimits.roomSize, 3);
    const joined = await c.joinRoom(ROOM, { alias: 'c' });
    assert.equal(joined.participants.length, 3);
    // Lowered again: nobody is put out, the next joiner is refused.
    relay.setLimits({ roomSize: 2 });
    const d = await session();
    await assert.rejects(d.joinRoom(ROOM, { alias: 'd' }), /room is full \(2 members\)/);
  });

  test('a bad value changes nothing', () => {
    const before = { ...relay.currentLimits };
    assert.throws(() => relay.setLimits({ roomSize: 65 }), { name: 'UsageError' });
    assert.throws(() => relay.setLimits({ joinBurst: 0, roomSize: 5 }), { name: 'UsageError' });
    assert.throws(() => relay.setLimits({ nonsense: 3 } as unknown as Partial<RelayLimits>), { name: 'UsageError' });
    assert.deepEqual({ ...relay.currentLimits }, before);
    assert.deepEqual(relay.setLimits({ roomSize: before.roomSize, joinBurst: undefined }), [], 'the same values: nothing changed');
  });

  test('an open connection\'s signal budget takes the new rate', async () => {
    const s = await session();
    for (let i = 0; i < 5; i++) await s.ping();
    relay.setLimits({ signalBurst: 2, signalsPerSecond: 1 });
    let refused = 0;
    for (let i = 0; i < 5; i++) {
      await s.ping().catch((err: Error) => {
        assert.equal(err.name, 'RefusedError', String(err));
        refused++;
      });
    }
    assert.ok(refused >= 2, `${refused} of 5 quick pings refused at 1 a second with a burst of 2`);
    relay.setLimits({ signalBurst: DEFAULT_RELAY_LIMITS.signalBurst, signalsPerSecond: DEFAULT_RELAY_LIMITS.signalsPerSecond });
  });

  test('the gate: a lowered connection limit drops the next handshake, a raised one admits it', async () => {
    const openNow = relay.metrics.connectionsOpen;
    const droppedBefore = relay.metrics.refused['connection-limit'];
    relay.setLimits({ connections: openNow });
    await assert.rejects(session(1500));
    assert.ok(relay.metrics.refused['connection-limit'] > droppedBefore, 'dropped by the gate as over the connection limit');
    relay.setLimits({ connections: openNow + 1 });
    const s = await session();
    assert.ok((await s.ping()) >= 0);
  });

  test('connections per address: applies to the next connection', async () => {
    relay.setLimits({ connections: DEFAULT_RELAY_LIMITS.connections, connectionsPerSource: relay.metrics.connectionsOpen });
    await assert.rejects(
      (async () => {
        const s = await session();
        await s.ping();
      })(),
      (err: Error) => /too many connections from 127\.0\.0\.1/.test(err.message),
    );
  });
});
