/**
 * What quiche alone costs per forwarded datagram, as the relay uses it through
 * @matrixai/quic's N-API binding: for each packet from a member, recv() it, take the
 * datagram out, queue it for the other member and build that member's packet (send()).
 * Two connections in this process exchange packets through memory (no UDP, no event loop,
 * no JS of ours): only the relay side's four native calls are timed. Added to the plain Node
 * UDP forwarder's cost per packet, it bounds what any relay on this QUIC stack can reach.
 */
import { randomBytes } from 'node:crypto';
import { buildQuicheConfig, clientDefault, serverDefault } from '@matrixai/quic/config.js';
import { quiche } from '@matrixai/quic/native/index.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';

type QuicheConnection = ReturnType<typeof quiche.Connection.connect>;

const CLIENT = { host: '127.0.0.1', port: 40001 };
const SERVER = { host: '127.0.0.1', port: 40002 };
const toServer = { to: SERVER, from: CLIENT };
const toClient = { to: CLIENT, from: SERVER };

/** Move every packet `from` has to `to`; how many moved. */
function pump(from: QuicheConnection, to: QuicheConnection, info: typeof toServer, buf: Uint8Array): number {
  let n = 0;
  for (;;) {
    const r = from.send(buf);
    if (r === null) return n;
    to.recv(buf.subarray(0, r[0]), info);
    n++;
  }
}

/** Microseconds per forwarded datagram spent in quiche's recv + dgramRecvVec + dgramSend + send. */
export async function quicheCostPerForwardUs(packets = 20_000, payloadBytes = 100): Promise<number> {
  const tls = await deriveTlsCertificate(randomBytes(32));
  const common = { enableDgram: [true, 1024, 1024] as [boolean, number, number], applicationProtos: ['wzp-bench'], maxIdleTimeout: 60_000 };
  const serverConfig = buildQuicheConfig({ ...serverDefault, ...common, key: tls.keyPem, cert: tls.certPem, verifyPeer: false });
  const clientConfig = buildQuicheConfig({ ...clientDefault, ...common, verifyPeer: false });
  const client = quiche.Connection.connect(null, randomBytes(20), CLIENT, SERVER, clientConfig);
  const server = quiche.Connection.accept(randomBytes(20), null, SERVER, CLIENT, serverConfig);
  const a = new Uint8Array(65_536);
  const b = new Uint8Array(65_536);
  for (let round = 0; round < 50 && !(client.isEstablished() && server.isEstablished()); round++) {
    pump(client, server, toServer, a);
    pump(server, client, toClient, b);
  }
  if (!client.isEstablished() || !server.isEstablished()) throw new Error('quiche floor: the in-process handshake did not complete');
  pump(client, server, toServer, a);
  pump(server, client, toClient, b);

  const payload = new Uint8Array(payloadBytes);
  let timedNs = 0n;
  for (let i = 0; i < packets; i++) {
    client.dgramSend(payload);
    const out = client.send(a);
    if (out === null) throw new Error('quiche floor: the client wrote no packet');
    const packet = a.subarray(0, out[0]);
    const t0 = process.hrtime.bigint();
    server.recv(packet, toServer);
    const d = server.dgramRecvVec();
    if (d !== null) server.dgramSend(d);
    const back = server.send(b);
    timedNs += process.hrtime.bigint() - t0;
    if (back !== null) client.recv(b.subarray(0, back[0]), toClient);
    while (client.dgramRecvVec() !== null);
    // Whatever else either side has to say (ACK-only packets), untimed.
    pump(client, server, toServer, a);
    pump(server, client, toClient, b);
  }
  return Number(timedNs) / 1000 / packets;
}
