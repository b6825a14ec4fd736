/**
 * The relay's end of the UDP media path without sockets: RelayMediaPath finds a route by the
 * first 30 bits of a packet's token (an integer key, for speed) and must still accept only
 * the whole token, from the member's address.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Socket as UdpSocket } from 'node:dgram';
import { RelayMediaPath, type RelayRoute } from '../../core/transport/udp-media.js';
import type { DatagramChannel, DatagramStats } from '../../core/transport/datagrams.js';
import { MEDIA_PATH_CONFIRM, MEDIA_PATH_MEDIA, MEDIA_PATH_PROBE } from '../../core/wire/media-path.js';

interface Sent {
  data: Uint8Array;
  port: number;
  host: string;
}

function fakeUdp(sent: Sent[]): UdpSocket {
  return {
    getSendQueueCount: () => 0,
    send: (data: Uint8Array | Uint8Array[], port: number, host: string) => {
      sent.push({ data: Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data), port, host });
    },
  } as unknown as UdpSocket;
}

function quicChannel(sent: Uint8Array[]): DatagramChannel {
  const stats: DatagramStats = { sent: 0, received: 0, droppedQueueFull: 0, droppedTooLarge: 0, droppedClosed: 0, purgedStale: 0 };
  return {
    send: (payload) => {
      sent.push(Uint8Array.from(payload));
      return true;
    },
    onDatagram: () => undefined,
    maxPayload: () => 1306,
    purgeIfQueued: () => 0,
    stats: () => stats,
    pathStats: () => undefined,
  };
}

function setup(): { path: RelayMediaPath; route: RelayRoute; token: Buffer; media: Uint8Array[]; udpSent: Sent[]; quicSent: Uint8Array[]; from: { address: string; port: number } } {
  const udpSent: Sent[] = [];
  const quicSent: Uint8Array[] = [];
  const media: Uint8Array[] = [];
  const path = new RelayMediaPath(() => fakeUdp(udpSent));
  const from = { address: '127.0.0.1', port: 40001 };
  const route = path.route(quicChannel(quicSent), { remote: () => ({ host: from.address, port: from.port }), onMedia: (p) => media.push(Uint8Array.from(p)) });
  const token = Buffer.from(route.enable(), 'hex');
  return { path, route, token, media, udpSent, quicSent, from };
}

const packet = (type: number, token: Uint8Array, datagram: number[] = []): Buffer => Buffer.from([type, ...token, ...datagram]);

describe('RelayMediaPath', () => {
  it('takes media with the whole token from the member\'s address, and hands on the datagram', () => {
    const { path, route, token, media, from } = setup();
    path.handle(packet(MEDIA_PATH_MEDIA, token, [1, 2, 3]), from);
    assert.deepEqual(media.map((m) => [...m]), [[1, 2, 3]]);
    assert.equal(route.confirmed, true);
    assert.equal(path.stats.received, 1);
    assert.equal(path.stats.rejected, 0);
  });

  it('refuses a token that shares the route\'s lookup key (its first 30 bits) but not the rest, from the member\'s own address', () => {
    const { path, route, token, media, from } = setup();
    for (const flip of [[3, 0x01], [3, 0x02], [4, 0x80], [7, 0x01]] as const) {
      const forged = Buffer.from(token);
      forged[flip[0]] ^= flip[1];
      path.handle(packet(MEDIA_PATH_MEDIA, forged, [9]), from);
      path.handle(packet(MEDIA_PATH_CONFIRM, forged), from);
    }
    assert.equal(media.length, 0);
    assert.equal(route.confirmed, false);
    assert.equal(path.stats.rejected, 8);
  });

  it('refuses the right token from another address or port, and tokens after disable() or a new enable()', () => {
    const { path, route, token, media, from } = setup();
    path.handle(packet(MEDIA_PATH_MEDIA, token, [1]), { address: '127.0.0.2', port: from.port });
    path.handle(packet(MEDIA_PATH_MEDIA, token, [1]), { address: from.address, port: from.port + 1 });
    const fresh = Buffer.from(route.enable(), 'hex');
    path.handle(packet(MEDIA_PATH_MEDIA, token, [1]), from);
    route.disable();
    path.handle(packet(MEDIA_PATH_MEDIA, fresh, [1]), from);
    assert.equal(media.length, 0);
    assert.equal(path.stats.rejected, 4);
  });

  it('answers a probe with an ack of the same size to the member\'s address only; malformed packets are counted', () => {
    const { path, token, udpSent, from } = setup();
    path.handle(packet(MEDIA_PATH_PROBE, token), from);
    assert.equal(udpSent.length, 1);
    assert.equal(udpSent[0].data.length, 9);
    assert.equal(udpSent[0].port, from.port);
    path.handle(packet(MEDIA_PATH_PROBE, token, [0]), from); // 10 bytes: trailing
    path.handle(packet(MEDIA_PATH_MEDIA, token), from); // no datagram
    path.handle(Buffer.of(MEDIA_PATH_MEDIA, 1, 2), from); // truncated token
    path.handle(Buffer.concat([packet(MEDIA_PATH_MEDIA, token), Buffer.alloc(2000)]), from); // too large
    assert.equal(path.stats.rejected, 4);
    assert.equal(path.stats.probes, 1);
  });

  it('sends a room datagram as the path packet once confirmed, the tagged datagram in QUIC before', () => {
    const { path, route, token, udpSent, quicSent, from } = setup();
    const pathPacket = Uint8Array.of(MEDIA_PATH_MEDIA, 0, 7, 42);
    assert.equal(route.sendRoomMedia(pathPacket, pathPacket.subarray(1)), true);
    assert.deepEqual(quicSent.map((d) => [...d]), [[0, 7, 42]]);
    path.handle(packet(MEDIA_PATH_CONFIRM, token), from);
    assert.equal(route.sendRoomMedia(pathPacket, pathPacket.subarray(1)), true);
    assert.deepEqual([...udpSent[0].data], [MEDIA_PATH_MEDIA, 0, 7, 42]);
    assert.equal(path.stats.sent, 1);
    assert.equal(route.stats().sent, 1);
  });
});
