/**
 * Small UDP and timing helpers for NAT probes: open and close the auxiliary sockets that some
 * RFC 5780 tests need (never the caller's shared socket), and abortable waits.
 */
import dgram from 'node:dgram';
import { NetworkError, errorMessage } from '../errors.js';

export type UdpFamily = 'udp4' | 'udp6';

/** The dgram socket type matching a socket's bound address family. */
export function socketFamily(socket: dgram.Socket): UdpFamily {
  return socket.address().family === 'IPv6' ? 'udp6' : 'udp4';
}

/** Opens a UDP socket bound to `address` (default: any) and an ephemeral port. */
export function openUdpSocket(type: UdpFamily, address?: string): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket({ type });
    const onError = (err: Error) => {
      socket.close();
      reject(new NetworkError(`cannot bind a UDP socket: ${err.message}`, { cause: err }));
    };
    socket.once('error', onError);
    socket.bind({ port: 0, address }, () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

/** Closes a socket this module opened; safe to call on an already closed socket. */
export function closeUdpSocket(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // ERR_SOCKET_DGRAM_NOT_RUNNING: already closed
    }
  });
}

export { delay } from '../time.js';

/**
 * The local address a socket's datagrams to `remote` leave from: its bound address, or for a
 * wildcard-bound socket the one the kernel's route picks (a connected UDP socket learns it
 * without sending anything).
 */
export async function sourceAddressToward(socket: dgram.Socket, remote: { address: string; port: number }): Promise<string> {
  const bound = socket.address().address;
  if (bound !== '0.0.0.0' && bound !== '::') return bound;
  const probe = dgram.createSocket({ type: socketFamily(socket) });
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.connect(remote.port, remote.address, () => {
        probe.off('error', reject);
        resolve();
      });
    });
    return probe.address().address;
  } catch (err) {
    throw new NetworkError(`no route to ${remote.address}: ${errorMessage(err)}`, { cause: err });
  } finally {
    probe.close();
  }
}
