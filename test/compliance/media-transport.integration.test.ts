/**
 * Every MediaTransport implementation passes the shared compliance suite over a real relay on
 * loopback (real QUIC, real UDP): two members of a room, each end one member's transport.
 * - relay-quic: the QUIC datagram path alone (sessions that keep media in QUIC);
 * - relay-udp: the UDP media path alone, once both members confirmed it;
 * - the relay session's media as a whole (the path switch: UDP once confirmed, else QUIC).
 */
import { after, before } from 'node:test';
import { RelaySession } from '../../core/client/relay-session.js';
import { describeMediaTransportCompliance, type MediaTransportPair } from '../../core/compliance/media-transport.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { Relay } from '../../core/relay/relay.js';
import { SOURCE_ID_BYTES } from '../../core/relay/rooms.js';
import { writeSourceId } from '../../core/wire/room-source.js';
import { MediaPathSwitch, type MediaTransport } from '../../core/transport/media-transport.js';
import { expectFingerprint } from '../../core/transport/quic.js';
import { waitFor } from '../helpers/wait.js';

let relay: Relay;
let tls: Awaited<ReturnType<typeof deriveTlsCertificate>>;
let rooms = 0;

before(async () => {
  tls = await deriveTlsCertificate(generateIdentity().seed);
  relay = await Relay.start({ listen: { host: '127.0.0.1', port: 0 }, tls, fingerprint: tls.fingerprint, udpMedia: true });
});
after(async () => {
  await relay.stop();
});

/** The relay tags what it forwards with the sender's source id (u16, big-endian). */
function tagged(sourceId: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(SOURCE_ID_BYTES + payload.byteLength);
  writeSourceId(out, 0, sourceId);
  out.set(payload, SOURCE_ID_BYTES);
  return out;
}

/** Two members in a fresh room; `pick` chooses which transport of each session is tested. */
async function roomPair(mediaPath: 'auto' | 'quic', pick: (s: RelaySession) => MediaTransport): Promise<MediaTransportPair> {
  const room = (++rooms).toString(16).padStart(32, '0');
  const sessions: RelaySession[] = [];
  try {
    for (let i = 0; i < 2; i++) sessions.push(await RelaySession.open({ relay: relay.address, verify: expectFingerprint(tls.fingerprint, 'relay'), mediaPath }));
    const [ja, jb] = [await sessions[0].joinRoom(room), await sessions[1].joinRoom(room)];
    if (mediaPath === 'auto') await waitFor(() => sessions.every((s) => s.mediaPathStats().path === 'udp'));
    const [a, b] = sessions.map(pick);
    return {
      a,
      b,
      deliveredAs: (from, payload) => tagged(from === 'a' ? ja.sourceId : jb.sourceId, payload),
      close: async () => {
        for (const s of sessions) await s.close().catch(() => undefined);
      },
    };
  } catch (err) {
    for (const s of sessions) await s.close().catch(() => undefined);
    throw err;
  }
}

function path(s: RelaySession, kind: MediaTransport['kind']): MediaTransport {
  const sw = s.mediaTransport as MediaPathSwitch;
  const found = sw.paths.find((p) => p.kind === kind);
  if (!found) throw new Error(`no ${kind} path`);
  return found;
}

const overhead = { forwardingOverhead: SOURCE_ID_BYTES };

describeMediaTransportCompliance('relay-quic (QUIC datagrams to the relay)', { connect: () => roomPair('quic', (s) => path(s, 'relay-quic')) }, overhead);
describeMediaTransportCompliance('relay-udp (the UDP media path to the relay)', { connect: () => roomPair('auto', (s) => path(s, 'relay-udp')) }, overhead);
describeMediaTransportCompliance('relay session media (path switch, on the UDP path)', { connect: () => roomPair('auto', (s) => s.mediaTransport) }, overhead);
describeMediaTransportCompliance('relay session media (path switch, QUIC only)', { connect: () => roomPair('quic', (s) => s.mediaTransport) }, overhead);
