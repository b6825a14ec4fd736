/**
 * A small in-process RFC 5780 STUN server on loopback for unit tests: two addresses
 * (127.0.0.1 and 127.0.0.2) × two ports, honouring CHANGE-REQUEST and RESPONSE-PORT, with
 * switches to misbehave (no OTHER-ADDRESS, ignore or drop CHANGE-REQUEST, drop or corrupt
 * answers, error responses).
 */
import dgram from 'node:dgram';
import stun from 'stun';
import type { Endpoint } from '../../core/nat/stun.js';
import { StunAttribute } from '../../core/nat/stun.js';

const BINDING_SUCCESS = 0x0101;
const BINDING_ERROR = 0x0111;
const CHANGE_IP = 0x04;
const CHANGE_PORT = 0x02;

export interface FakeServerBehaviour {
  /** Include OTHER-ADDRESS (default true). */
  otherAddress?: boolean;
  /** What to do with CHANGE-REQUEST: answer from the requested origin, from the primary, or not at all. */
  changeRequest?: 'honour' | 'ignore' | 'drop';
  /** Drop the first N requests (retransmission tests). */
  dropFirst?: number;
  /** Never answer. */
  silent?: boolean;
  /** Before the real answer, send one with the same transaction id but a broken attribute. */
  corruptFirst?: boolean;
  /** Answer every request with this STUN error code. */
  errorCode?: number;
}

export interface FakeStunServer {
  readonly primary: Endpoint;
  readonly other: Endpoint;
  /** Requests received, in order, with the address they came from. */
  readonly requests: { from: Endpoint; to: Endpoint }[];
  behaviour: FakeServerBehaviour;
  close(): Promise<void>;
}

const IPS = ['127.0.0.1', '127.0.0.2'] as const;

function bind(address: string, port: number): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', reject);
    socket.bind(port, address, () => {
      socket.off('error', reject);
      resolve(socket);
    });
  });
}

/** Binds the same port on both loopback addresses. */
async function bindPair(): Promise<[dgram.Socket, dgram.Socket]> {
  const first = await bind(IPS[0], 0);
  return [first, await bind(IPS[1], first.address().port)];
}

export async function startFakeStunServer(behaviour: FakeServerBehaviour = {}): Promise<FakeStunServer> {
  const [p1, p2] = await bindPair();
  const [a1, a2] = await bindPair();
  // sockets[ipIndex][portIndex]
  const sockets = [
    [p1, a1],
    [p2, a2],
  ];
  const primaryPort = p1.address().port;
  const alternatePort = a1.address().port;
  const server: FakeStunServer = {
    primary: { address: IPS[0], port: primaryPort },
    other: { address: IPS[1], port: alternatePort },
    requests: [],
    behaviour,
    close: () => Promise.all(sockets.flat().map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(() => undefined),
  };

  sockets.forEach((row, ipIndex) =>
    row.forEach((socket, portIndex) => {
      socket.on('message', (packet, rinfo) => {
        const from = { address: rinfo.address, port: rinfo.port };
        server.requests.push({ from, to: { address: IPS[ipIndex], port: socket.address().port } });
        const b = server.behaviour;
        if (b.silent || server.requests.length <= (b.dropFirst ?? 0)) return;
        const request = stun.decode(packet);
        const flags = Number(request.getAttribute(StunAttribute.CHANGE_REQUEST)?.value ?? 0);
        if (flags !== 0 && b.changeRequest === 'drop') return;
        const honour = flags !== 0 && (b.changeRequest ?? 'honour') === 'honour';
        const replyIp = honour && flags & CHANGE_IP ? 1 - ipIndex : ipIndex;
        const replyPort = honour && flags & CHANGE_PORT ? 1 - portIndex : portIndex;
        const responsePort = request.getAttribute(StunAttribute.RESPONSE_PORT)?.value;
        const to = typeof responsePort === 'number' ? responsePort : from.port;
        const origin = sockets[replyIp][replyPort];
        if (b.corruptFirst) origin.send(corruptResponse(request.transactionId), to, from.address);
        origin.send(response(request.transactionId, from, origin, server, b), to, from.address);
      });
    }),
  );
  return server;
}

function response(transactionId: Buffer, from: Endpoint, origin: dgram.Socket, server: FakeStunServer, b: FakeServerBehaviour): Buffer {
  if (b.errorCode !== undefined) {
    const error = stun.createMessage(BINDING_ERROR, transactionId);
    error.addAttribute(StunAttribute.ERROR_CODE, b.errorCode, 'Test Error');
    return error.toBuffer();
  }
  const message = stun.createMessage(BINDING_SUCCESS, transactionId);
  message.addAttribute(StunAttribute.XOR_MAPPED_ADDRESS, from.address, from.port);
  message.addAttribute(StunAttribute.RESPONSE_ORIGIN, origin.address().address, origin.address().port);
  if (b.otherAddress ?? true) message.addAttribute(StunAttribute.OTHER_ADDRESS, server.other.address, server.other.port);
  return message.toBuffer();
}

/** A success response whose XOR-MAPPED-ADDRESS claims address family 7: must be dropped. */
function corruptResponse(transactionId: Buffer): Buffer {
  const header = Buffer.alloc(20);
  header.writeUInt16BE(BINDING_SUCCESS, 0);
  header.writeUInt16BE(12, 2);
  header.writeUInt32BE(0x2112a442, 4);
  transactionId.copy(header, 8);
  const attribute = Buffer.from([0x00, 0x20, 0x00, 0x08, 0x00, 0x07, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef]);
  return Buffer.concat([header, attribute]);
}
