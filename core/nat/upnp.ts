/**
 * UPnP Internet Gateway Device port mapping, IGD v1 and v2: SSDP discovery, the device
 * description, and the SOAP actions AddPortMapping / AddAnyPortMapping / DeletePortMapping /
 * GetGenericPortMappingEntry / GetExternalIPAddress on the WANIPConnection (or
 * WANPPPConnection) service.
 *
 * Written here (SSDP over node:dgram, HTTP with fetch) instead of wrapping npm `nat-upnp`
 * 1.1.1: it only matches `WANIPConnection:1`/`WANPPPConnection:1` service types, so it finds
 * nothing on an IGDv2 description (miniupnpd's default), and patching that would still
 * leave its other problems: it repeats SSDP discovery and the description fetch before
 * every action, has no timeout on HTTP requests and no AbortSignal, reports SOAP faults as
 * "Request failed: 500" without the UPnP error code (so a port conflict cannot be told from
 * a refusal), and depends on the deprecated `request` package. The protocol subset needed is
 * small: a few regular expressions read the flat XML these actions use.
 *
 * Safety: a LOCATION from SSDP is only followed if it is http: on the host that answered,
 * and the control URL must be on that same host; every response body is size-limited.
 */

import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { AbortError, NetworkError, UsageError, throwIfAborted } from '../errors.js';
import { PortMapError, type PortMapRefusal, closeQuietly, localAddressToward } from './gateway.js';

export const SSDP_MULTICAST_ADDRESS = '239.255.255.250';
export const SSDP_PORT = 1900;

/** What discovery searches for: the IGD device types and the WAN IP connection services. */
export const IGD_SEARCH_TARGETS = [
  'urn:schemas-upnp-org:device:InternetGatewayDevice:2',
  'urn:schemas-upnp-org:device:InternetGatewayDevice:1',
  'urn:schemas-upnp-org:service:WANIPConnection:2',
  'urn:schemas-upnp-org:service:WANIPConnection:1',
] as const;

/** Services that can map ports, best first. */
export const WAN_CONNECTION_SERVICES = [
  'urn:schemas-upnp-org:service:WANIPConnection:2',
  'urn:schemas-upnp-org:service:WANIPConnection:1',
  'urn:schemas-upnp-org:service:WANPPPConnection:1',
] as const;

const SSDP_MX_SECONDS = 1;
const SSDP_MULTICAST_TTL = 2;
const SSDP_ROUNDS = 2;
const DEFAULT_DISCOVERY_TIMEOUT_MS = 2500;
const DEFAULT_HTTP_TIMEOUT_MS = 5000;
const MAX_BODY_BYTES = 256 * 1024;
/** IGDv2 lease durations are 1..604800 s (a week); 0 is not allowed. */
const IGD2_MAX_LEASE_S = 604800;
/** Bounded number of other external ports to try when an IGDv1 reports a conflict. */
const CONFLICT_RETRIES = 3;
const MAX_LIST_ENTRIES = 1024;
const DEFAULT_DESCRIPTION = 'wzp';

/** UPnP-IGD error codes (IGD v1/v2 WANIPConnection specs) and what they mean to us. */
export const UpnpError = {
  INVALID_ARGS: 402,
  ACTION_FAILED: 501,
  NOT_AUTHORIZED: 606,
  SPECIFIED_ARRAY_INDEX_INVALID: 713,
  NO_SUCH_ENTRY_IN_ARRAY: 714,
  CONFLICT_IN_MAPPING_ENTRY: 718,
  SAME_PORT_VALUES_REQUIRED: 724,
  ONLY_PERMANENT_LEASES_SUPPORTED: 725,
  NO_PORT_MAPS_AVAILABLE: 728,
  CONFLICT_WITH_OTHER_MECHANISMS: 729,
} as const;

const REFUSALS: Record<number, PortMapRefusal> = {
  [UpnpError.INVALID_ARGS]: 'invalid-args',
  [UpnpError.ACTION_FAILED]: 'action-failed',
  [UpnpError.NOT_AUTHORIZED]: 'not-authorized',
  [UpnpError.SPECIFIED_ARRAY_INDEX_INVALID]: 'no-such-entry',
  [UpnpError.NO_SUCH_ENTRY_IN_ARRAY]: 'no-such-entry',
  [UpnpError.CONFLICT_IN_MAPPING_ENTRY]: 'conflict',
  [UpnpError.SAME_PORT_VALUES_REQUIRED]: 'conflict',
  [UpnpError.ONLY_PERMANENT_LEASES_SUPPORTED]: 'only-permanent-leases',
  [UpnpError.NO_PORT_MAPS_AVAILABLE]: 'no-resources',
  [UpnpError.CONFLICT_WITH_OTHER_MECHANISMS]: 'conflict',
};

// ---------------------------------------------------------------------------------------
// SSDP

export function encodeMSearch(searchTarget: string): string {
  return [
    'M-SEARCH * HTTP/1.1',
    `HOST: ${SSDP_MULTICAST_ADDRESS}:${SSDP_PORT}`,
    'MAN: "ssdp:discover"',
    `MX: ${SSDP_MX_SECONDS}`,
    `ST: ${searchTarget}`,
    '',
    '',
  ].join('\r\n');
}

export interface SsdpResponse {
  location: string;
  searchTarget: string;
}

/** A search response (HTTP/1.1 200 with LOCATION and ST headers), else undefined. */
export function parseSsdpResponse(text: string): SsdpResponse | undefined {
  const [statusLine, ...lines] = text.split(/\r?\n/);
  if (!/^HTTP\/1\.[01] 200\b/i.test(statusLine ?? '')) return undefined;
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  const location = headers.get('location');
  const searchTarget = headers.get('st');
  return location && searchTarget ? { location, searchTarget } : undefined;
}

/** The LOCATION, if it is an http: URL on the host that sent the response. */
function trustedLocation(response: SsdpResponse, responder: RemoteInfo): string | undefined {
  try {
    const url = new URL(response.location);
    return url.protocol === 'http:' && url.hostname === responder.address ? url.href : undefined;
  } catch {
    return undefined;
  }
}

export interface DiscoveryOptions {
  /** Prefer the IGD at this address (the default gateway); others only if it does not answer. */
  gateway?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Multicasts M-SEARCH for IGD devices/services and returns the description URL of the
 * first answer from `gateway` (or, when none came from it by the deadline, of the first
 * answer at all). Throws NetworkError if nothing answers.
 */
export async function discoverIgd(options: DiscoveryOptions = {}): Promise<string> {
  throwIfAborted(options.signal);
  const socket = createSocket('udp4');
  try {
    await bindSocket(socket);
    socket.setMulticastTTL(SSDP_MULTICAST_TTL);
    return await collectLocation(socket, options);
  } catch (error) {
    if (error instanceof AbortError || error instanceof NetworkError) throw error;
    throw new NetworkError(`SSDP discovery failed: ${String(error)}`, { cause: error });
  } finally {
    closeQuietly(socket);
  }
}

function bindSocket(socket: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, () => {
      socket.off('error', reject);
      resolve();
    });
  });
}

function collectLocation(socket: Socket, options: DiscoveryOptions): Promise<string> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_DISCOVERY_TIMEOUT_MS;
  return new Promise<string>((resolve, reject) => {
    let fallback: string | undefined;
    const timers: NodeJS.Timeout[] = [];
    const finish = (settle: () => void): void => {
      timers.forEach(clearTimeout);
      options.signal?.removeEventListener('abort', onAbort);
      socket.removeAllListeners('message');
      socket.removeAllListeners('error');
      socket.on('error', () => undefined);
      settle();
    };
    const onAbort = (): void => finish(() => reject(new AbortError('UPnP discovery aborted', { cause: options.signal?.reason })));
    const onDeadline = (): void =>
      finish(() =>
        fallback !== undefined
          ? resolve(fallback)
          : reject(
              new NetworkError(`no UPnP Internet Gateway Device answered SSDP discovery within ${timeoutMs} ms`, {
                suggestions: ['enable UPnP on the router', 'check that multicast reaches the LAN'],
              }),
            ),
      );

    socket.on('message', (datagram: Buffer, responder: RemoteInfo) => {
      const response = parseSsdpResponse(datagram.toString('latin1'));
      const location = response && trustedLocation(response, responder);
      if (location === undefined) return;
      if (options.gateway === undefined || responder.address === options.gateway) finish(() => resolve(location));
      else fallback ??= location;
    });
    socket.on('error', (error) => finish(() => reject(new NetworkError(`SSDP discovery failed: ${error.message}`, { cause: error }))));
    if (options.signal?.aborted) {
      onAbort(); // aborted while the socket was binding
      return;
    }
    options.signal?.addEventListener('abort', onAbort, { once: true });

    for (let round = 0; round < SSDP_ROUNDS; round++) {
      timers.push(setTimeout(() => sendSearches(socket), (round * timeoutMs) / (SSDP_ROUNDS + 1)));
    }
    timers.push(setTimeout(onDeadline, timeoutMs));
  });
}

function sendSearches(socket: Socket): void {
  for (const target of IGD_SEARCH_TARGETS) {
    socket.send(encodeMSearch(target), SSDP_PORT, SSDP_MULTICAST_ADDRESS, (error) => {
      if (error) socket.emit('error', error);
    });
  }
}

// ---------------------------------------------------------------------------------------
// XML (the flat subset IGD descriptions and SOAP bodies use)

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

export function xmlUnescape(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (entity, body: string) => {
    if (body.startsWith('#x')) return String.fromCodePoint(parseInt(body.slice(2), 16));
    if (body.startsWith('#')) return String.fromCodePoint(parseInt(body.slice(1), 10));
    return ENTITIES[body] ?? entity;
  });
}

export function xmlEscape(text: string): string {
  return text.replace(/[<>&"']/g, (char) => `&${Object.entries(ENTITIES).find(([, value]) => value === char)?.[0]};`);
}

/** Optional attributes, then optional space: what may sit between a tag's name and its `>` or `/>`. */
const ATTRIBUTES = '(?:\\s[^>]*[^/>\\s])?\\s*';

/** Text of every element named `name` (any namespace prefix), in document order. */
function elementTexts(xml: string, name: string): string[] {
  const pattern = new RegExp(`<(?:[\\w.-]+:)?${name}${ATTRIBUTES}(?:/>|>([\\s\\S]*?)</(?:[\\w.-]+:)?${name}\\s*>)`, 'g');
  return Array.from(xml.matchAll(pattern), (match) => match[1] ?? '');
}

function elementText(xml: string, name: string): string | undefined {
  const text = elementTexts(xml, name)[0];
  return text === undefined ? undefined : xmlUnescape(text.trim());
}

// ---------------------------------------------------------------------------------------
// Device description

/** The WAN connection service on an IGD that port-mapping actions go to. */
export interface IgdService {
  /** e.g. urn:schemas-upnp-org:service:WANIPConnection:2 */
  serviceType: string;
  controlUrl: string;
  /** The IGD version the service belongs to: 2 offers AddAnyPortMapping. */
  igdVersion: 1 | 2;
}

/**
 * The best WAN connection service in a device description (WANIPConnection:2, then :1, then
 * WANPPPConnection:1), its control URL resolved against URLBase or the description URL.
 * Throws PortMapError('no-service') if there is none, or if its control URL is on another host.
 */
export function parseIgdDescription(xml: string, location: string): IgdService {
  const base = elementText(xml, 'URLBase') || location;
  const services = elementTexts(xml, 'service').map((block) => ({
    serviceType: elementText(block, 'serviceType') ?? '',
    controlUrl: elementText(block, 'controlURL') ?? '',
  }));
  for (const wanted of WAN_CONNECTION_SERVICES) {
    const service = services.find((candidate) => candidate.serviceType === wanted && candidate.controlUrl !== '');
    if (service === undefined) continue;
    const controlUrl = resolveOnSameHost(service.controlUrl, base, location);
    return { serviceType: wanted, controlUrl, igdVersion: wanted.endsWith(':2') ? 2 : 1 };
  }
  throw new PortMapError('upnp', 'no-service', `the device at ${location} offers no WAN connection service`);
}

function resolveOnSameHost(relative: string, base: string, location: string): string {
  let url: URL;
  try {
    url = new URL(relative, base);
  } catch (error) {
    throw new PortMapError('upnp', 'no-service', `bad control URL "${relative}"`, { cause: error });
  }
  if (url.protocol !== 'http:' || url.host !== new URL(location).host) {
    throw new PortMapError('upnp', 'no-service', `control URL ${url.href} is not on the device's host (${location})`);
  }
  return url.href;
}

// ---------------------------------------------------------------------------------------
// SOAP

export type SoapArgs = ReadonlyArray<readonly [name: string, value: string | number]>;

export function encodeSoapRequest(serviceType: string, action: string, args: SoapArgs): string {
  const body = args.map(([name, value]) => `<${name}>${xmlEscape(String(value))}</${name}>`).join('');
  return (
    '<?xml version="1.0" encoding="utf-8"?>' +
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
    's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
    `<s:Body><u:${action} xmlns:u="${xmlEscape(serviceType)}">${body}</u:${action}></s:Body>` +
    '</s:Envelope>'
  );
}

/** The output arguments of `<u:{action}Response>`, by name; undefined if it is absent. */
export function parseSoapResponse(xml: string, action: string): Record<string, string> | undefined {
  const body = elementTexts(xml, `${action}Response`)[0];
  if (body === undefined) return undefined;
  const args: Record<string, string> = {};
  const child = new RegExp(`<(?:[\\w.-]+:)?([\\w.-]+)${ATTRIBUTES}(?:/>|>([\\s\\S]*?)</(?:[\\w.-]+:)?\\1\\s*>)`, 'g');
  for (const match of body.matchAll(child)) {
    args[match[1]] = xmlUnescape((match[2] ?? '').trim());
  }
  return args;
}

/** The UPnP error in a SOAP fault body, if there is one. */
export function parseSoapFault(xml: string): { code: number; description: string } | undefined {
  const code = Number(elementText(xml, 'errorCode'));
  if (!Number.isInteger(code)) return undefined;
  return { code, description: elementText(xml, 'errorDescription') ?? '' };
}

export interface HttpOptions {
  /** Per request; default 5000 ms. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Runs one SOAP action; returns its output arguments. Faults throw PortMapError. */
export async function soapCall(service: IgdService, action: string, args: SoapArgs, options: HttpOptions = {}): Promise<Record<string, string>> {
  const response = await boundedFetch(
    service.controlUrl,
    {
      method: 'POST',
      headers: {
        'Content-Type': 'text/xml; charset="utf-8"',
        SOAPAction: `"${service.serviceType}#${action}"`,
      },
      body: encodeSoapRequest(service.serviceType, action, args),
    },
    `UPnP ${action}`,
    options,
  );
  if (response.status !== 200) throw soapFailure(action, response.status, response.body);
  const output = parseSoapResponse(response.body, action);
  if (output === undefined) {
    throw new PortMapError('upnp', 'action-failed', `UPnP ${action}: the answer has no ${action}Response element`);
  }
  return output;
}

function soapFailure(action: string, status: number, body: string): PortMapError {
  const fault = parseSoapFault(body);
  if (fault === undefined) {
    return new PortMapError('upnp', 'action-failed', `UPnP ${action} failed with HTTP ${status}`);
  }
  const reason = REFUSALS[fault.code] ?? 'unknown';
  return new PortMapError('upnp', reason, `UPnP ${action} refused: ${fault.code} ${fault.description}`.trim(), {
    resultCode: fault.code,
  });
}

/** fetch with a timeout, the caller's signal, and a size limit on the body. */
async function boundedFetch(url: string, init: RequestInit, what: string, options: HttpOptions): Promise<{ status: number; body: string }> {
  throwIfAborted(options.signal);
  const timeoutMs = options.timeoutMs ?? DEFAULT_HTTP_TIMEOUT_MS;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  try {
    const response = await fetch(url, { ...init, signal, redirect: 'error' });
    return { status: response.status, body: await readLimited(response, what) };
  } catch (error) {
    if (options.signal?.aborted) throw new AbortError(`${what} aborted`, { cause: error });
    if (timeout.aborted) throw new NetworkError(`${what}: no answer from ${url} within ${timeoutMs} ms`, { cause: error });
    if (error instanceof PortMapError) throw error;
    throw new NetworkError(`${what}: request to ${url} failed: ${String(error)}`, { cause: error });
  }
}

async function readLimited(response: Response, what: string): Promise<string> {
  if (response.body === null) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_BODY_BYTES) {
      await reader.cancel();
      throw new PortMapError('upnp', 'action-failed', `${what}: answer larger than ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// ---------------------------------------------------------------------------------------
// Client

/** An IGD found and described: where to send actions, and our address on its LAN. */
export interface UpnpGateway {
  location: string;
  service: IgdService;
  /** This host's address toward the IGD: the NewInternalClient of our mappings. */
  internalAddress: string;
}

/** A UDP mapping made with UPnP-IGD. Plain data (JSON-serialisable). */
export interface UpnpMapping {
  protocol: 'upnp';
  /** The IGD's address (host of its control URL). */
  gateway: string;
  service: IgdService;
  internalAddress: string;
  internalPort: number;
  externalAddress: string;
  externalPort: number;
  /** Lease in seconds; 0 = permanent (an IGDv1 that only supports permanent leases). */
  lifetimeS: number;
}

/** One row of the IGD's port-mapping table. */
export interface UpnpListEntry {
  /** '' = any remote host. */
  remoteHost: string;
  externalPort: number;
  protocol: string;
  internalClient: string;
  internalPort: number;
  enabled: boolean;
  description: string;
  /** Remaining lease in seconds; 0 = permanent. */
  leaseDurationS: number;
}

export interface FindUpnpGatewayOptions extends HttpOptions {
  /** Skip discovery: the device description URL. */
  location?: string;
  /** Prefer the IGD at this address during discovery. */
  gateway?: string;
  discoveryTimeoutMs?: number;
}

/** Discovers (unless `location` is given) and describes the IGD. */
export async function findUpnpGateway(options: FindUpnpGatewayOptions = {}): Promise<UpnpGateway> {
  const location =
    options.location ??
    (await discoverIgd({ gateway: options.gateway, timeoutMs: options.discoveryTimeoutMs, signal: options.signal }));
  const description = await boundedFetch(location, { method: 'GET' }, 'UPnP description', options);
  if (description.status !== 200) {
    throw new PortMapError('upnp', 'no-service', `UPnP description ${location} answered HTTP ${description.status}`);
  }
  const service = parseIgdDescription(description.body, location);
  const controlUrl = new URL(service.controlUrl);
  const internalAddress = await localAddressToward(controlUrl.hostname, Number(controlUrl.port || 80));
  return { location, service, internalAddress };
}

export async function upnpExternalAddress(igd: Pick<UpnpGateway, 'service'>, options: HttpOptions = {}): Promise<string> {
  const output = await soapCall(igd.service, 'GetExternalIPAddress', [], options);
  const address = output.NewExternalIPAddress ?? '';
  if (address === '' || address === '0.0.0.0') {
    throw new PortMapError('upnp', 'network-failure', `UPnP gateway has no external address ("${address}")`);
  }
  return address;
}

export interface UpnpMapParams {
  internalPort: number;
  /** Wanted external port; default: the internal port. */
  externalPort?: number;
  lifetimeS: number;
  description?: string;
}

/** What mapping needs of an UpnpGateway (a mapping carries both, so it can renew itself). */
export type UpnpTarget = Pick<UpnpGateway, 'service' | 'internalAddress'>;

/**
 * Maps a UDP port to this host. IGDv2: AddAnyPortMapping (the gateway picks a free port if
 * the wanted one is taken). IGDv1: AddPortMapping, with up to 3 other random ports on a
 * conflict, and a permanent lease if the gateway only supports those.
 */
export async function upnpMap(igd: UpnpTarget, params: UpnpMapParams, options: HttpOptions = {}): Promise<UpnpMapping> {
  checkPort(params.internalPort);
  const wantedPort = params.externalPort || params.internalPort;
  checkPort(wantedPort);
  // The address first: asking it cannot leave a mapping behind if it fails.
  const externalAddress = await upnpExternalAddress(igd, options);
  const { externalPort, lifetimeS } =
    igd.service.igdVersion === 2
      ? await addAnyPortMapping(igd, params, wantedPort, options)
      : await addPortMappingV1(igd, params, wantedPort, options);
  return {
    protocol: 'upnp',
    gateway: new URL(igd.service.controlUrl).hostname,
    service: igd.service,
    internalAddress: igd.internalAddress,
    internalPort: params.internalPort,
    externalAddress,
    externalPort,
    lifetimeS,
  };
}

function mappingArgs(igd: UpnpTarget, params: UpnpMapParams, externalPort: number, leaseS: number): SoapArgs {
  return [
    ['NewRemoteHost', ''],
    ['NewExternalPort', externalPort],
    ['NewProtocol', 'UDP'],
    ['NewInternalPort', params.internalPort],
    ['NewInternalClient', igd.internalAddress],
    ['NewEnabled', 1],
    ['NewPortMappingDescription', params.description ?? DEFAULT_DESCRIPTION],
    ['NewLeaseDuration', leaseS],
  ];
}

type Granted = { externalPort: number; lifetimeS: number };

async function addAnyPortMapping(igd: UpnpTarget, params: UpnpMapParams, wantedPort: number, options: HttpOptions): Promise<Granted> {
  const leaseS = Math.min(Math.max(params.lifetimeS, 1), IGD2_MAX_LEASE_S);
  const output = await soapCall(igd.service, 'AddAnyPortMapping', mappingArgs(igd, params, wantedPort, leaseS), options);
  const externalPort = Number(output.NewReservedPort);
  if (!Number.isInteger(externalPort) || externalPort < 1 || externalPort > 0xffff) {
    throw new PortMapError('upnp', 'action-failed', `AddAnyPortMapping returned no valid port ("${output.NewReservedPort}")`);
  }
  return { externalPort, lifetimeS: leaseS };
}

async function addPortMappingV1(igd: UpnpTarget, params: UpnpMapParams, wantedPort: number, options: HttpOptions): Promise<Granted> {
  let granted: Granted = { externalPort: wantedPort, lifetimeS: params.lifetimeS };
  let conflicts = 0;
  // Bounded: the first try, one retry with a permanent lease, CONFLICT_RETRIES other ports.
  for (let attempt = 0; attempt < CONFLICT_RETRIES + 2; attempt++) {
    try {
      await soapCall(igd.service, 'AddPortMapping', mappingArgs(igd, params, granted.externalPort, granted.lifetimeS), options);
      return granted;
    } catch (error) {
      if (!(error instanceof PortMapError)) throw error;
      if (error.reason === 'only-permanent-leases' && granted.lifetimeS !== 0) {
        granted = { ...granted, lifetimeS: 0 };
      } else if (error.reason === 'conflict' && conflicts < CONFLICT_RETRIES) {
        conflicts += 1;
        granted = { ...granted, externalPort: randomDynamicPort() };
      } else {
        throw error;
      }
    }
  }
  throw new PortMapError('upnp', 'conflict', `AddPortMapping: no free external port after ${conflicts} retries`);
}

/** A port in the dynamic range 49152-65535, where fixed services do not live. */
function randomDynamicPort(): number {
  return 49152 + Math.floor(Math.random() * (65536 - 49152));
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 0xffff) throw new UsageError(`port out of range: ${port}`);
}

/** Deletes a mapping; one that is already gone counts as deleted. */
export async function upnpDelete(mapping: UpnpMapping, options: HttpOptions = {}): Promise<void> {
  try {
    await soapCall(
      mapping.service,
      'DeletePortMapping',
      [
        ['NewRemoteHost', ''],
        ['NewExternalPort', mapping.externalPort],
        ['NewProtocol', 'UDP'],
      ],
      options,
    );
  } catch (error) {
    if (error instanceof PortMapError && error.reason === 'no-such-entry') return;
    throw error;
  }
}

/** The IGD's whole port-mapping table (all hosts, all protocols), up to 1024 rows. */
export async function upnpList(igd: Pick<UpnpGateway, 'service'>, options: HttpOptions = {}): Promise<UpnpListEntry[]> {
  const entries: UpnpListEntry[] = [];
  for (let index = 0; index < MAX_LIST_ENTRIES; index++) {
    let output: Record<string, string>;
    try {
      output = await soapCall(igd.service, 'GetGenericPortMappingEntry', [['NewPortMappingIndex', index]], options);
    } catch (error) {
      // The table ends with SpecifiedArrayIndexInvalid (713); some IGDs say 714 or 402.
      if (error instanceof PortMapError && (error.reason === 'no-such-entry' || error.reason === 'invalid-args')) break;
      throw error;
    }
    entries.push(listEntry(output));
  }
  return entries;
}

function listEntry(output: Record<string, string>): UpnpListEntry {
  return {
    remoteHost: output.NewRemoteHost ?? '',
    externalPort: Number(output.NewExternalPort),
    protocol: (output.NewProtocol ?? '').toUpperCase(),
    internalClient: output.NewInternalClient ?? '',
    internalPort: Number(output.NewInternalPort),
    enabled: output.NewEnabled === '1' || output.NewEnabled?.toLowerCase() === 'true',
    description: output.NewPortMappingDescription ?? '',
    leaseDurationS: Number(output.NewLeaseDuration ?? 0),
  };
}
