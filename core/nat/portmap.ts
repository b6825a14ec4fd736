/**
 * One port-mapping API over PCP (RFC 6887), NAT-PMP (RFC 6886) and UPnP-IGD v1/v2: ask the
 * gateway to forward an external UDP port to a local one, so peers can reach us directly.
 *
 * - `probe()`: which protocols the gateway answers, and its external address. Leaves nothing
 *   behind: PCP has no query-only request, so its probe maps a throwaway port and deletes it.
 * - `add()`: tries the protocols in preference order (default PCP, NAT-PMP, UPnP) and
 *   returns the first mapping made; a protocol that is refused or silent falls through to
 *   the next.
 * - `delete()`, `keep()` (renew at half the lifetime until aborted, then delete).
 * - `list()`: the UPnP IGD's mapping table. PCP and NAT-PMP have no list operation: a
 *   client only knows the mappings it made itself.
 *
 * Mappings are plain JSON-serialisable data carrying what their protocol needs to renew and
 * delete them (PCP nonce, UPnP control URL), so they survive being handed between processes.
 */

import { createSocket } from 'node:dgram';
import { setTimeout as delay } from 'node:timers/promises';
import { AbortError, NatTraversalError, NetworkError, UsageError, throwIfAborted } from '../errors.js';
import { PortMapError, type PortMapProtocol, type RetransmitSchedule, closeQuietly, resolveGateway } from './gateway.js';
import { type NatPmpMapping, natPmpDelete, natPmpExternalAddress, natPmpMap } from './natpmp.js';
import { type PcpMapping, pcpDelete, pcpMap } from './pcp.js';
import {
  type UpnpGateway,
  type UpnpListEntry,
  type UpnpMapping,
  findUpnpGateway,
  upnpDelete,
  upnpExternalAddress,
  upnpList,
  upnpMap,
} from './upnp.js';

export type { PortMapProtocol } from './gateway.js';
export type { PcpMapping } from './pcp.js';
export type { NatPmpMapping } from './natpmp.js';
export type { UpnpListEntry, UpnpMapping } from './upnp.js';

/** A mapping made by any of the protocols; `protocol` tells which. */
export type PortMapping = PcpMapping | NatPmpMapping | UpnpMapping;

export const DEFAULT_PREFERENCE: readonly PortMapProtocol[] = ['pcp', 'natpmp', 'upnp'];

export type PortMapEvent =
  | { type: 'portmap:trying'; protocol: PortMapProtocol }
  | { type: 'portmap:failed'; protocol: PortMapProtocol; error: Error }
  | { type: 'portmap:mapped'; mapping: PortMapping }
  | { type: 'portmap:renewed'; mapping: PortMapping }
  | { type: 'portmap:deleted'; mapping: PortMapping };

export interface PortMapperOptions {
  /** The gateway for PCP and NAT-PMP (and the preferred UPnP device); default: the default route's. */
  gateway?: string;
  /** Protocol order for add(); default PCP, NAT-PMP, UPnP. */
  preference?: readonly PortMapProtocol[];
  onProgress?: (event: PortMapEvent) => void;
  /** PCP / NAT-PMP retransmission (default 250 ms doubling, 4 sends). */
  schedule?: RetransmitSchedule;
  /** PCP / NAT-PMP server port; 5351 unless testing. */
  serverPort?: number;
  /** UPnP: skip SSDP and use this device description URL. */
  upnpLocation?: string;
  upnpDiscoveryTimeoutMs?: number;
  upnpHttpTimeoutMs?: number;
}

export interface AddMappingRequest {
  internalPort: number;
  /** Suggested external port (default: the gateway's choice; UPnP tries the internal port). */
  externalPort?: number;
  /** Requested lifetime in seconds (≥ 1); the gateway may grant less or more. */
  lifetimeS: number;
  /** Overrides the mapper's preference for this call. */
  preference?: readonly PortMapProtocol[];
  /** UPnP mapping description (shown in router UIs). */
  description?: string;
}

export interface SignalOption {
  signal?: AbortSignal;
}

/** What a probe learned about one protocol. */
export interface ProtocolProbe {
  available: boolean;
  externalAddress?: string;
  /** UPnP only: the IGD version of the service found. */
  igdVersion?: 1 | 2;
  elapsedMs: number;
  /** Why the protocol is not available (error name, reason when a gateway refused, message). */
  error?: { name: string; reason?: string; message: string };
  /** Only if the PCP probe could not delete its throwaway mapping (it expires by itself). */
  leftover?: PortMapping;
}

export interface ProbeResult {
  gateway: string;
  /** The first external address reported, in preference order. */
  externalAddress?: string;
  protocols: Record<PortMapProtocol, ProtocolProbe>;
}

/** PCP probes ask for this lifetime; the mapping is deleted at once anyway. */
const PROBE_LIFETIME_S = 30;
/** setTimeout's limit (~24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** A renewal that fails is retried after this fraction of the time left, until expiry. */
const RENEW_RETRY_FRACTION = 0.5;
const MIN_RENEW_RETRY_MS = 1000;

export class PortMapper {
  readonly #options: PortMapperOptions;
  #gateway: Promise<string> | undefined;
  #upnp: Promise<UpnpGateway> | undefined;

  constructor(options: PortMapperOptions = {}) {
    this.#options = options;
  }

  /** Which protocols answer, and the external address; leaves no mapping behind. */
  async probe(options: SignalOption = {}): Promise<ProbeResult> {
    const gateway = await this.#resolveGateway(options.signal);
    const order = this.#options.preference ?? DEFAULT_PREFERENCE;
    const [pcp, natpmp, upnp] = await Promise.all([
      timed(() => this.#probePcp(gateway, options.signal)),
      timed(async () => ({ externalAddress: await natPmpExternalAddress(this.#udpOptions(gateway, options.signal)) })),
      timed(async () => {
        const igd = await this.#upnpGateway(options.signal);
        return { externalAddress: await upnpExternalAddress(igd, this.#httpOptions(options.signal)), igdVersion: igd.service.igdVersion };
      }),
    ]);
    throwIfAborted(options.signal);
    const protocols = { pcp, natpmp, upnp };
    const externalAddress = order.map((protocol) => protocols[protocol].externalAddress).find((address) => address !== undefined);
    return { gateway, externalAddress, protocols };
  }

  /** Maps a UDP port with the first protocol that works. Throws NatTraversalError if none does. */
  async add(request: AddMappingRequest, options: SignalOption = {}): Promise<PortMapping> {
    checkRequest(request);
    const failures: string[] = [];
    const errors: Error[] = [];
    for (const protocol of request.preference ?? this.#options.preference ?? DEFAULT_PREFERENCE) {
      throwIfAborted(options.signal);
      this.#emit({ type: 'portmap:trying', protocol });
      try {
        const mapping = await this.#map(protocol, request, options.signal);
        this.#emit({ type: 'portmap:mapped', mapping });
        return mapping;
      } catch (error) {
        if (!isFallThrough(error)) throw error;
        failures.push(`${protocol}: ${error.message}`);
        errors.push(error);
        this.#emit({ type: 'portmap:failed', protocol, error });
      }
    }
    throw new NatTraversalError(`no port-mapping protocol worked (${failures.join('; ')})`, {
      cause: new AggregateError(errors),
      suggestions: ['enable PCP, NAT-PMP or UPnP on the router', 'or forward the port on the router by hand'],
    });
  }

  /** Deletes a mapping. One the gateway no longer has counts as deleted. */
  async delete(mapping: PortMapping, options: SignalOption = {}): Promise<void> {
    switch (mapping.protocol) {
      case 'pcp':
        await pcpDelete(mapping, this.#udpOptions(mapping.gateway, options.signal));
        break;
      case 'natpmp':
        await natPmpDelete(mapping, this.#udpOptions(mapping.gateway, options.signal));
        break;
      case 'upnp':
        await upnpDelete(mapping, this.#httpOptions(options.signal));
        break;
    }
    this.#emit({ type: 'portmap:deleted', mapping });
  }

  /**
   * The UPnP IGD's mapping table (every host's mappings, including ones miniupnpd-style
   * gateways made for PCP/NAT-PMP). PCP and NAT-PMP themselves have no list operation.
   */
  async list(options: SignalOption = {}): Promise<UpnpListEntry[]> {
    const igd = await this.#upnpGateway(options.signal);
    return upnpList(igd, this.#httpOptions(options.signal));
  }

  /**
   * Keeps a mapping alive: renews it at half its lifetime until `signal` aborts, then deletes
   * it and resolves with the last version of the mapping (a renewal may move the external
   * port: watch 'portmap:renewed'). A renewal that fails is retried until the mapping would
   * have expired; then the mapping is deleted and keep() rejects with the renewal's error.
   */
  async keep(mapping: PortMapping, options: { signal: AbortSignal }): Promise<PortMapping> {
    let current = mapping;
    try {
      while (await sleepUnlessAborted(renewDelayMs(current), options.signal)) {
        current = await this.#renewBeforeExpiry(current, options.signal);
      }
    } catch (error) {
      if (!options.signal.aborted) {
        await this.delete(current).catch(() => undefined);
        throw error;
      }
    }
    await this.delete(current);
    return current;
  }

  async #renewBeforeExpiry(mapping: PortMapping, signal: AbortSignal): Promise<PortMapping> {
    const expiresAt = Date.now() + (mapping.lifetimeS * 1000) / 2;
    for (;;) {
      try {
        const renewed = await this.#renew(mapping, signal);
        this.#emit({ type: 'portmap:renewed', mapping: renewed });
        return renewed;
      } catch (error) {
        const leftMs = expiresAt - Date.now();
        if (!isFallThrough(error) || leftMs <= MIN_RENEW_RETRY_MS) throw error;
        if (!(await sleepUnlessAborted(Math.max(MIN_RENEW_RETRY_MS, leftMs * RENEW_RETRY_FRACTION), signal))) {
          return mapping;
        }
      }
    }
  }

  #renew(mapping: PortMapping, signal: AbortSignal): Promise<PortMapping> {
    const { internalPort, externalPort, lifetimeS } = mapping;
    switch (mapping.protocol) {
      case 'pcp':
        return pcpMap(
          { internalPort, externalPort, externalAddress: mapping.externalAddress, lifetimeS, nonce: mapping.nonce },
          this.#udpOptions(mapping.gateway, signal),
        );
      case 'natpmp':
        return natPmpMap({ internalPort, externalPort, lifetimeS }, this.#udpOptions(mapping.gateway, signal));
      case 'upnp':
        return upnpMap(mapping, { internalPort, externalPort, lifetimeS }, this.#httpOptions(signal));
    }
  }

  async #map(protocol: PortMapProtocol, request: AddMappingRequest, signal: AbortSignal | undefined): Promise<PortMapping> {
    const { internalPort, externalPort, lifetimeS } = request;
    switch (protocol) {
      case 'pcp':
        return pcpMap({ internalPort, externalPort, lifetimeS }, this.#udpOptions(await this.#resolveGateway(signal), signal));
      case 'natpmp':
        return natPmpMap({ internalPort, externalPort, lifetimeS }, this.#udpOptions(await this.#resolveGateway(signal), signal));
      case 'upnp': {
        const igd = await this.#upnpGateway(signal);
        return upnpMap(igd, { internalPort, externalPort, lifetimeS, description: request.description }, this.#httpOptions(signal));
      }
    }
  }

  /** PCP: maps a port no one else uses (held by a socket meanwhile), then deletes it. */
  async #probePcp(gateway: string, signal: AbortSignal | undefined): Promise<Omit<ProtocolProbe, 'elapsedMs' | 'available'>> {
    const holder = createSocket('udp4');
    try {
      const internalPort = await new Promise<number>((resolve, reject) => {
        holder.once('error', reject);
        holder.bind(0, () => resolve(holder.address().port));
      });
      const mapping = await pcpMap({ internalPort, lifetimeS: PROBE_LIFETIME_S }, this.#udpOptions(gateway, signal));
      try {
        await pcpDelete(mapping, this.#udpOptions(gateway));
      } catch (error) {
        return { externalAddress: mapping.externalAddress, leftover: mapping, error: describeError(error) };
      }
      return { externalAddress: mapping.externalAddress };
    } finally {
      closeQuietly(holder);
    }
  }

  #resolveGateway(signal: AbortSignal | undefined): Promise<string> {
    this.#gateway ??= resolveGateway(this.#options.gateway, { signal });
    this.#gateway.catch(() => (this.#gateway = undefined));
    return this.#gateway;
  }

  /** The IGD, discovered once per mapper (discovery takes a while); a failure is not cached. */
  async #upnpGateway(signal: AbortSignal | undefined): Promise<UpnpGateway> {
    if (this.#upnp === undefined) {
      const gateway = this.#options.gateway ?? (await this.#resolveGateway(signal).catch(() => undefined));
      this.#upnp = findUpnpGateway({
        location: this.#options.upnpLocation,
        gateway,
        discoveryTimeoutMs: this.#options.upnpDiscoveryTimeoutMs,
        ...this.#httpOptions(signal),
      });
      this.#upnp.catch(() => (this.#upnp = undefined));
    }
    return this.#upnp;
  }

  #udpOptions(gateway: string, signal?: AbortSignal) {
    return { gateway, port: this.#options.serverPort, schedule: this.#options.schedule, signal };
  }

  #httpOptions(signal: AbortSignal | undefined) {
    return { timeoutMs: this.#options.upnpHttpTimeoutMs, signal };
  }

  #emit(event: PortMapEvent): void {
    this.#options.onProgress?.(event);
  }
}

function checkRequest(request: AddMappingRequest): void {
  const { internalPort, externalPort = 0, lifetimeS } = request;
  if (!Number.isInteger(internalPort) || internalPort < 1 || internalPort > 0xffff) {
    throw new UsageError(`internal port must be 1-65535, got ${internalPort}`);
  }
  if (!Number.isInteger(externalPort) || externalPort < 0 || externalPort > 0xffff) {
    throw new UsageError(`external port must be 0-65535, got ${externalPort}`);
  }
  if (!Number.isInteger(lifetimeS) || lifetimeS < 1 || lifetimeS > 0xffffffff) {
    throw new UsageError(`lifetime must be a whole number of seconds ≥ 1, got ${lifetimeS}`);
  }
}

/** Refusals and silence move on to the next protocol; aborts, usage errors and bugs do not. */
function isFallThrough(error: unknown): error is Error {
  return error instanceof PortMapError || error instanceof NetworkError;
}

/** Half the lifetime; never for a permanent (lifetime 0) mapping. */
function renewDelayMs(mapping: PortMapping): number {
  return mapping.lifetimeS === 0 ? Infinity : (mapping.lifetimeS * 1000) / 2;
}

/** Waits `ms` (Infinity: until aborted); false if `signal` aborted first. */
async function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<boolean> {
  let left = ms;
  while (!signal.aborted && left > 0) {
    const step = Math.min(left, MAX_TIMER_MS);
    try {
      await delay(step, undefined, { signal });
    } catch {
      return false;
    }
    left -= step;
  }
  return !signal.aborted;
}

async function timed(
  run: () => Promise<Omit<ProtocolProbe, 'elapsedMs' | 'available'>>,
): Promise<ProtocolProbe> {
  const start = performance.now();
  try {
    const found = await run();
    return { available: true, ...found, elapsedMs: Math.round(performance.now() - start) };
  } catch (error) {
    if (error instanceof AbortError) throw error;
    return { available: false, elapsedMs: Math.round(performance.now() - start), error: describeError(error) };
  }
}

function describeError(error: unknown): NonNullable<ProtocolProbe['error']> {
  if (error instanceof PortMapError) return { name: error.name, reason: error.reason, message: error.message };
  if (error instanceof Error) return { name: error.name, message: error.message };
  return { name: 'Error', message: String(error) };
}
