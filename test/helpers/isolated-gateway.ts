/**
 * Runs one command next to a fake NAT-PMP gateway on 127.0.0.1:5351, inside a private network
 * namespace that has only a loopback interface (the caller starts this file with
 * `unshare --net`; see isolatedCommand). Port-mapping commands talk to "the gateway" and send
 * UPnP's SSDP search to a multicast group: here the gateway is ours, and nothing can leave the
 * namespace. Usage: node isolated-gateway.js NODE BIN ARGS... (exits with the command's code).
 *
 * The gateway answers NAT-PMP (RFC 6886) external-address and map requests with success, and
 * PCP requests (version 2) with NAT-PMP's "unsupported version", as RFC 6887 §9 asks of a
 * NAT-PMP-only gateway.
 */
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';

/** The command line that runs `args` (node, bin, ...) isolated, next to the fake gateway. */
export function isolatedCommand(args: string[]): { command: string; args: string[] } {
  const self = new URL(import.meta.url).pathname;
  return {
    command: 'unshare',
    args: ['--net', '--', 'sh', '-c', 'ip link set lo up && exec "$@"', 'sh', process.execPath, self, ...args],
  };
}

const EXTERNAL_ADDRESS = [192, 0, 2, 1]; // TEST-NET-1: a documentation address, never routed
const started = Date.now();

function answer(request: Buffer): Buffer | undefined {
  const epoch = Math.floor((Date.now() - started) / 1000) + 1;
  const version = request[0];
  const op = request[1];
  if (version !== 0) {
    const out = Buffer.alloc(8);
    out.writeUInt8(0, 0);
    out.writeUInt8(128 + (op & 0x7f), 1);
    out.writeUInt16BE(1, 2); // UNSUPP_VERSION
    out.writeUInt32BE(epoch, 4);
    return out;
  }
  if (op === 0 && request.length >= 2) {
    const out = Buffer.alloc(12);
    out.writeUInt8(128, 1);
    out.writeUInt32BE(epoch, 4);
    Buffer.from(EXTERNAL_ADDRESS).copy(out, 8);
    return out;
  }
  if ((op === 1 || op === 2) && request.length >= 12) {
    const internal = request.readUInt16BE(4);
    const suggested = request.readUInt16BE(6);
    const lifetime = request.readUInt32BE(8);
    const out = Buffer.alloc(16);
    out.writeUInt8(128 + op, 1);
    out.writeUInt32BE(epoch, 4);
    out.writeUInt16BE(internal, 8);
    out.writeUInt16BE(lifetime === 0 ? 0 : suggested || 40000 + (internal % 1000), 10);
    out.writeUInt32BE(lifetime, 12);
    return out;
  }
  return undefined;
}

async function main(argv: string[]): Promise<void> {
  const socket = createSocket('udp4');
  socket.on('message', (msg, remote) => {
    const reply = answer(msg);
    if (reply) socket.send(reply, remote.port, remote.address);
  });
  await new Promise<void>((resolve) => socket.bind(5351, '127.0.0.1', resolve));
  const [command, ...args] = argv;
  const child = spawn(command, args, { stdio: 'inherit' });
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  child.on('close', (code, signal) => {
    socket.close();
    process.exit(code ?? (signal ? 128 + 15 : 1));
  });
}

if (process.argv[1] && new URL(import.meta.url).pathname === process.argv[1]) await main(process.argv.slice(2));
