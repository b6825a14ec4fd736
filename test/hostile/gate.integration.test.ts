/**
 * The QUIC gate against a real relay process: no datagram an attacker can send without a
 * connection crashes it, and nothing it answers to an unvalidated address is larger than
 * 3x what it received from there. Loopback only; every flood is bounded.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { sleep } from '../helpers/wait.js';
import { heardFraction, startHostileRelay, startTwoPartyCall, type HostileRelay } from './harness.js';
import { longHeaderMatrix, longHeaderPacket, probeSocket, sendAll, UNVALIDATED_KINDS, zeroRttPacket } from './packets.js';

describe('the QUIC gate, against a relay process', () => {
  let r: HostileRelay;
  before(async () => {
    r = await startHostileRelay();
  });
  after(() => r.cleanup());

  test('one 0-RTT packet for an unknown connection leaves the relay serving', async () => {
    const p = await probeSocket();
    await sendAll(p.socket, r.port, r.host, [zeroRttPacket()]);
    await p.close();
    // @matrixai/quic's failure surfaced as an unhandled rejection ~2 s later: wait past it.
    await sleep(3000);
    assert.ok(r.alive(), 'the relay process is still running');
  });

  test('every reply to an unvalidated address is at most 3x the bytes received from it, for every packet kind', async () => {
    const ratios: string[] = [];
    for (const kind of UNVALIDATED_KINDS) {
      const p = await probeSocket();
      const packets = Array.from({ length: 30 }, () => kind.make());
      const sent = packets.reduce((n, b) => n + b.length, 0);
      await sendAll(p.socket, r.port, r.host, packets);
      await sleep(250);
      const got = p.received();
      await p.close();
      ratios.push(`${kind.name}: ${got.bytes}/${sent}`);
      assert.ok(got.bytes <= 3 * sent, `${kind.name}: ${got.bytes} bytes back for ${sent} sent`);
      // Initials under 1200 bytes and every 0-RTT/Handshake/Retry for an unknown connection go unanswered.
      if (/Initial, (8|48) bytes|0-RTT|Handshake|Retry|Version Negotiation|100 bytes/.test(kind.name)) {
        assert.equal(got.packets, 0, `${kind.name} drew an answer`);
      }
    }
    assert.ok(r.alive(), ratios.join('\n'));
  });

  test('Retries are rate-limited per source', async () => {
    const p = await probeSocket();
    // 200 first Initials of 1200 bytes in ~0.2 s from one address.
    const packets = Array.from({ length: 200 }, () => longHeaderPacket({ version: 1, type: 0, size: 1200 }));
    await sendAll(p.socket, r.port, r.host, packets, 2);
    await sleep(300);
    const got = p.received();
    await p.close();
    assert.ok(got.packets > 0, 'a first Initial is answered with a Retry');
    assert.ok(got.packets <= 45, `${got.packets} Retries for 200 Initials in well under 2 s`);
  });

  test('every QUIC version x long-header type x truncation, then random datagrams: the relay still serves a call', async () => {
    const p = await probeSocket();
    let sent = await sendAll(p.socket, r.port, r.host, [...longHeaderMatrix()].map((m) => m.packet));
    // Random datagrams, half of them forced to look like QUIC long or short headers.
    const random = fc.sample(
      fc.tuple(fc.uint8Array({ minLength: 0, maxLength: 1400 }), fc.constantFrom(-1, 0x80, 0xc0, 0xd0, 0xe0, 0xf0, 0x40)).map(([bytes, first]) => {
        const b = Buffer.from(bytes);
        if (first >= 0 && b.length > 0) b[0] = first | (b[0] & 0x0f);
        return b;
      }),
      { numRuns: 3000, seed: 1414 },
    );
    sent += await sendAll(p.socket, r.port, r.host, random);
    await p.close();
    assert.ok(sent > 3000);
    await sleep(2500);
    assert.ok(r.alive(), 'the relay survived the barrage');

    const call = startTwoPartyCall(r.relay, 'after-the-barrage', 4);
    try {
      const reports = await call.finish();
      for (const [i, report] of reports.entries()) {
        assert.equal(report.participants.length, 1, JSON.stringify(report.participants));
        assert.ok(report.participants[0].framesPlayed > 100, `party ${i} heard ${report.participants[0].framesPlayed} frames`);
      }
      assert.ok(heardFraction(call.parties[0].wav, 700) >= 0.9, 'the 440 Hz member hears 700 Hz');
      assert.ok(heardFraction(call.parties[1].wav, 440) >= 0.9, 'the 700 Hz member hears 440 Hz');
    } finally {
      call.cleanup();
    }
    const { metrics } = await r.stop();
    assert.ok(metrics, 'the relay printed its summary');
    for (const reason of ['zero-rtt-unknown', 'small-initial', 'runt', 'short-unknown', 'version-negotiation', 'unknown-version', 'handshake-unknown']) {
      assert.ok(metrics.refused[reason] > 0, `refusals counted as ${reason}: ${JSON.stringify(metrics.refused)}`);
    }
  });
});
