/**
 * The relay answers STUN on its own port (core/relay/relay.ts dispatching to
 * core/nat/stun-server.ts) next to QUIC and the UDP media path, and counts what it did in its
 * metrics. Loopback only.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { StunClient, encodeBindingRequest } from '../../core/nat/stun.js';
import { closeUdpSocket, openUdpSocket } from '../../core/nat/udp.js';
import { Relay } from '../../core/relay/relay.js';
import { expectFingerprint, formatHostPort } from '../../core/transport/quic.js';
import { type CliHome, makeHome, parseJsonDocument, startRelayProcess } from '../helpers/cli.js';

describe('the relay as a STUN server', () => {
  let relay: Relay;
  before(async () => {
    const tls = await deriveTlsCertificate(generateIdentity().seed);
    relay = await Relay.start({ listen: { host: '127.0.0.1', port: 0 }, tls, fingerprint: tls.fingerprint });
  });
  after(() => relay.stop());

  it('answers a Binding request on its QUIC port, while QUIC and the media path keep working', async () => {
    const socket = await openUdpSocket('udp4', '127.0.0.1');
    const client = new StunClient(socket);
    try {
      const before = relay.metrics;
      const answer = await client.binding({ address: '127.0.0.1', port: relay.address.port });
      assert.deepEqual(answer.mappedAddress, { address: '127.0.0.1', port: socket.address().port });
      // A media path probe with an unknown token (first byte 0x21) still goes to the media path.
      socket.send(Buffer.concat([Buffer.of(0x21), randomBytes(8)]), relay.address.port, '127.0.0.1');
      // Truncated STUN (first byte 0x00): counted, not answered.
      socket.send(encodeBindingRequest({ transactionId: randomBytes(12) }).subarray(0, 12), relay.address.port, '127.0.0.1');
      const session = await RelaySession.open({ relay: relay.address, verify: expectFingerprint(relay.fingerprint, 'relay') });
      try {
        assert.match(await session.reflect({ timeoutMs: 2000 }), /^127\.0\.0\.1:\d+$/);
      } finally {
        await session.close();
      }
      const m = relay.metrics;
      assert.equal(m.stunRequests - before.stunRequests, 2);
      assert.equal(m.stunAnswered - before.stunAnswered, 1);
      assert.equal(m.stunDropped.malformed - before.stunDropped.malformed, 1);
      assert.equal(m.udpPathRejected - before.udpPathRejected, 1, 'the media path probe was not taken for STUN');
      assert.deepEqual(relay.stunEndpoints, [{ address: '127.0.0.1', port: relay.address.port }]);
    } finally {
      client.close();
      await closeUdpSocket(socket);
    }
  });
});

describe('wzp relay --stun-alternate', () => {
  let home: CliHome;
  before(() => {
    home = makeHome('wzp-relay-stun-');
  });
  after(() => home.cleanup());

  it('answers RFC 5780 on four addresses and reports them and its STUN counters on exit', async () => {
    const relay = await startRelayProcess(['--listen', '127.0.0.1:0', '--stun-alternate', '127.0.0.2', '--json'], home);
    const port = Number(relay.address.split(':')[1]);
    const socket = await openUdpSocket('udp4', '127.0.0.1');
    const client = new StunClient(socket);
    try {
      const answer = await client.binding({ address: '127.0.0.1', port });
      assert.deepEqual(answer.otherAddress, { address: '127.0.0.2', port: port + 1 });
      const changed = await client.probe({ address: '127.0.0.1', port }, { changeIp: true, changePort: true, timeoutMs: 2000 });
      assert.ok(changed.answered);
      assert.deepEqual(changed.from, { address: '127.0.0.2', port: port + 1 }, 'CHANGE-REQUEST answered from the other address');
    } finally {
      client.close();
      await closeUdpSocket(socket);
    }
    const exit = await relay.stop('SIGINT');
    assert.equal(exit.code, 0, exit.stderr);
    const report = parseJsonDocument(exit).result as { stunEndpoints: string[]; metrics: { stunRequests: number; stunAnswered: number } };
    assert.deepEqual(report.stunEndpoints, [`127.0.0.1:${port}`, `127.0.0.1:${port + 1}`, `127.0.0.2:${port}`, `127.0.0.2:${port + 1}`]);
    assert.equal(report.metrics.stunRequests, 2);
    assert.equal(report.metrics.stunAnswered, 2);
    assert.equal(formatHostPort({ host: '127.0.0.1', port }), relay.address);
  });
});
