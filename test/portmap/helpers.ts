/**
 * Test helpers for port mapping: hex fixtures, and fake gateways on loopback (a PCP/NAT-PMP
 * UDP server and a UPnP IGD HTTP server) whose answers each test scripts.
 */

import assert from 'node:assert/strict';
import { type Socket, createSocket } from 'node:dgram';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DecodeError } from '../../core/errors.js';

/** Bytes from hex text; spaces and `|` separators are ignored. */
export function hex(text: string): Uint8Array {
  const digits = text.replace(/[\s|]/g, '');
  assert.match(digits, /^([0-9a-f]{2})*$/i, `bad hex fixture: ${text}`);
  return Uint8Array.from(digits.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Asserts that `run` throws a DecodeError with this reason and format. */
export function assertDecodeError(run: () => unknown, reason: string, format: string): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof DecodeError, `expected DecodeError, got ${String(error)}`);
    assert.equal(error.reason, reason, `reason (message: ${error.message})`);
    assert.equal(error.format, format);
    return true;
  });
}

/** Asserts that a promise rejects with an error of this `name` (and, if given, `reason`). */
export async function assertRejectsNamed(promise: Promise<unknown>, name: string, reason?: string): Promise<Error> {
  let caught: unknown;
  await assert.rejects(promise, (error: unknown) => {
    caught = error;
    assert.ok(error instanceof Error);
    assert.equal(error.name, name, error.message);
    if (reason !== undefined) assert.equal((error as { reason?: string }).reason, reason, error.message);
    return true;
  });
  return caught as Error;
}

// ---------------------------------------------------------------------------------------
// Fake PCP / NAT-PMP gateway on 127.0.0.1

export interface ReceivedDatagram {
  bytes: Uint8Array;
  atMs: number;
}

/**
 * A UDP server on 127.0.0.1 that records every request and answers with whatever `answer`
 * returns for it (nothing for undefined; several datagrams for an array).
 */
export class FakeUdpGateway {
  readonly received: ReceivedDatagram[] = [];
  answer: (request: Uint8Array, index: number) => Uint8Array | Uint8Array[] | undefined = () => undefined;
  readonly #socket: Socket = createSocket('udp4');
  readonly #start = performance.now();

  static async start(): Promise<FakeUdpGateway> {
    const gateway = new FakeUdpGateway();
    await new Promise<void>((resolve) => gateway.#socket.bind(0, '127.0.0.1', resolve));
    gateway.#socket.on('message', (message, remote) => {
      const bytes = new Uint8Array(message);
      gateway.received.push({ bytes, atMs: performance.now() - gateway.#start });
      const answer = gateway.answer(bytes, gateway.received.length - 1);
      for (const datagram of answer === undefined ? [] : Array.isArray(answer) ? answer : [answer]) {
        gateway.#socket.send(datagram, remote.port, remote.address);
      }
    });
    return gateway;
  }

  get port(): number {
    return (this.#socket.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#socket.close(() => resolve()));
  }
}

/** A UDP port on 127.0.0.1 that nothing listens on (bound, read, released). */
export async function closedUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

// ---------------------------------------------------------------------------------------
// Fake UPnP IGD on 127.0.0.1

export interface SoapExchange {
  action: string;
  soapAction: string;
  body: string;
}

export type SoapHandler = (action: string, body: string) => { status: number; body: string } | 'hang';

/** A fake IGD: GET /rootDesc.xml serves `description`, POST /ctl/IPConn runs `onSoap`. */
export class FakeIgd {
  readonly requests: SoapExchange[] = [];
  description = '';
  onSoap: SoapHandler = () => ({ status: 500, body: soapFault(401, 'Invalid Action') });
  readonly #server: Server;

  private constructor() {
    this.#server = createServer((request, response) => void this.#handle(request, response));
  }

  static async start(): Promise<FakeIgd> {
    const igd = new FakeIgd();
    await new Promise<void>((resolve) => igd.#server.listen(0, '127.0.0.1', resolve));
    return igd;
  }

  get location(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/rootDesc.xml`;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    if (request.method === 'GET' && request.url === '/rootDesc.xml') {
      response.writeHead(200, { 'Content-Type': 'text/xml' }).end(this.description);
      return;
    }
    const soapAction = String(request.headers.soapaction ?? '');
    const action = soapAction.replace(/^"[^#]*#|"$/g, '');
    this.requests.push({ action, soapAction, body });
    const answer = this.onSoap(action, body);
    if (answer === 'hang') return; // never answers; close() ends the connection
    response.writeHead(answer.status, { 'Content-Type': 'text/xml; charset="utf-8"' }).end(answer.body);
  }
}

export function igdDescription(serviceType: string, controlUrl = '/ctl/IPConn', urlBase = ''): string {
  return `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0">
${urlBase ? `<URLBase>${urlBase}</URLBase>` : ''}
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:2</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType>
<controlURL>/ctl/L3F</controlURL><SCPDURL>/L3F.xml</SCPDURL></service></serviceList>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:2</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:2</deviceType>
<serviceList><service>
<serviceType>${serviceType}</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
<controlURL>${controlUrl}</controlURL>
<eventSubURL>/evt/IPConn</eventSubURL><SCPDURL>/WANIPCn.xml</SCPDURL>
</service></serviceList></device></deviceList></device></deviceList></device></root>`;
}

export function soapOk(action: string, serviceType: string, args: Record<string, string | number> = {}): { status: number; body: string } {
  const inner = Object.entries(args)
    .map(([name, value]) => `<${name}>${value}</${name}>`)
    .join('');
  return {
    status: 200,
    body:
      '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
      's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>' +
      `<u:${action}Response xmlns:u="${serviceType}">${inner}</u:${action}Response></s:Body></s:Envelope>`,
  };
}

export function soapFault(code: number, description: string): string {
  return (
    '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
    's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><s:Fault>' +
    '<faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>' +
    `<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>${code}</errorCode>` +
    `<errorDescription>${description}</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>`
  );
}

/** The value of one argument element in a SOAP request body. */
export function soapArg(body: string, name: string): string | undefined {
  return new RegExp(`<${name}>([^<]*)</${name}>`).exec(body)?.[1];
}
