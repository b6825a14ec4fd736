/**
 * `wzp relay --debug-tap`: tap lines on stderr in the relay's log format, for the tapped room
 * only; none without the flag; a bad value is a usage error before anything binds.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RelaySession } from '../../core/client/relay-session.js';
import { parseFingerprint } from '../../core/crypto/fingerprint.js';
import { hashRoomName } from '../../core/crypto/room-name.js';
import { expectFingerprint, parseHostPort } from '../../core/transport/quic.js';
import { encodeMediaPacket, QualityTier } from '../../core/wire/media-header.js';
import { makeHome, runCli, startRelayProcess, type RunningRelay } from '../helpers/cli.js';

const TAP_LINE = /^(\d{4}-\d\d-\d\dT[\d:.]+Z) relay:tap (\{.*\})$/;

async function traffic(relay: RunningRelay, room: string): Promise<void> {
  const open = (): Promise<RelaySession> =>
    RelaySession.open({ relay: parseHostPort(relay.address), verify: expectFingerprint(parseFingerprint(relay.fingerprint), relay.address) });
  const [a, b] = [await open(), await open()];
  try {
    await a.joinRoom(room);
    await b.joinRoom(room);
    let got = 0;
    b.datagrams.onDatagram(() => got++);
    for (let seq = 100; seq < 105; seq++) {
      a.datagrams.send(
        encodeMediaPacket(
          { version: 1, codecId: 1, tier: QualityTier.GOOD, sequence: seq, timestamp: seq * 960, frameSamples: 960, fec: { schemeId: 0, block: 0, symbol: 0, repair: false, k: 0, r: 0 }, extensions: [] },
          Uint8Array.of(0, 1, 2, 3),
        ),
      );
    }
    for (const deadline = performance.now() + 3000; got < 5 && performance.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
    assert.equal(got, 5);
  } finally {
    await a.close();
    await b.close();
  }
}

describe('wzp relay --debug-tap', () => {
  test('prints one relay:tap line per packet of the tapped room, in and out, and nothing for another room', async () => {
    const home = makeHome('wzp-tap-');
    const relay = await startRelayProcess(['--listen', '127.0.0.1:0', '--debug-tap', 'standup'], home);
    try {
      await traffic(relay, hashRoomName('standup'));
      await traffic(relay, hashRoomName('elsewhere'));
    } finally {
      const { stderr } = await relay.stop('SIGTERM');
      home.cleanup();
      const lines = stderr.split('\n').filter((l) => l.includes('relay:tap'));
      const parsed = lines.map((l) => {
        const m = TAP_LINE.exec(l);
        assert.ok(m, l);
        return JSON.parse(m[2]) as Record<string, unknown>;
      });
      assert.deepEqual(parsed.filter((p) => p.dir === 'in').map((p) => p.seq), [100, 101, 102, 103, 104]);
      assert.equal(parsed.filter((p) => p.dir === 'out').length, 5);
      for (const p of parsed) assert.equal(p.room, hashRoomName('standup').slice(0, 8));
    }
  });

  test('without the flag no tap line is printed', async () => {
    const home = makeHome('wzp-tap-off-');
    const relay = await startRelayProcess(['--listen', '127.0.0.1:0'], home);
    try {
      await traffic(relay, hashRoomName('standup'));
    } finally {
      const { stderr } = await relay.stop('SIGTERM');
      home.cleanup();
      assert.ok(!stderr.includes('relay:tap'), stderr);
    }
  });

  test('an empty room name is a usage error (exit 2)', async () => {
    const home = makeHome('wzp-tap-bad-');
    try {
      const r = await runCli(['relay', '--listen', '127.0.0.1:0', '--debug-tap', 'name:', '--json'], home);
      assert.equal(r.code, 2, r.stderr);
    } finally {
      home.cleanup();
    }
  });
});
