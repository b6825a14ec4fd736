/**
 * `wzp reflect RELAY... [--stun HOST:PORT...]`: our address as relays (QUIC reflect) and STUN
 * servers see it, all asked from one local socket, and whether the NAT keeps one mapping for
 * every destination. Relays are trusted as everywhere else in wzp (pins, TOFU).
 */
import { InternalError, UsageError } from '../../core/errors.js';
import { type AddressFamily, type ReflectResult, reflectFromOneSocket } from '../../core/nat/reflect.js';
import type { Endpoint } from '../../core/nat/stun.js';
import { PinStore } from '../../core/transport/pin-store.js';
import { pinFile } from './paths.js';
import { connectToRelay } from './relay-connect.js';
import { loadNatConfig, noServersError, resolveEndpoints, selectServers } from './nat-config.js';

export interface ReflectRequest {
  /** Relays as given (`HOST:PORT`); with no relays and no STUN servers, netcheck.json's are used. */
  relays: string[];
  stun: string[];
  configDir: string;
  /** Explicit pin for the one relay given. */
  relayFingerprint?: string;
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface ReflectReport extends ReflectResult {
  /** The first answer, in the order relays then STUN servers were given. */
  observedAddress: string;
  /** Who gave that answer. */
  relay: string;
  /** That relay's certificate fingerprint (absent when the first answer came from STUN). */
  fingerprint?: string;
  rttMs: number;
}

export async function reflect(req: ReflectRequest): Promise<ReflectReport> {
  const loaded = await loadNatConfig(req.configDir);
  const servers = selectServers({ stun: req.stun, relay: req.relays }, loaded, { allOrNothing: true });
  if (servers.relays.length === 0 && servers.stun.length === 0) throw noServersError('reflect', servers.configFile, 'any', 'give relays as arguments (HOST:PORT ...) and/or --stun HOST:PORT');
  if (req.relayFingerprint !== undefined && servers.relays.length !== 1) {
    throw new UsageError(`--relay-fingerprint pins one relay, but ${servers.relays.length} relays were given`, {
      suggestions: ['give one RELAY with --relay-fingerprint, or pin several relays in netcheck.json'],
    });
  }
  const { family, stun, relays } = await chooseFamily(
    servers.relays.map((r) => r.address),
    servers.stun,
  );
  const pins = await PinStore.open(pinFile(req.configDir));
  const trusts: string[] = [];
  const result = await reflectFromOneSocket({
    family,
    stun,
    timeoutMs: req.timeoutMs,
    signal: req.signal,
    relays: servers.relays.map((relay, i) => ({
      label: relay.address,
      endpoint: relays[i],
      connect: async (socket, options) => {
        const connection = await connectToRelay({
          relay: relay.address,
          configDir: req.configDir,
          relayFingerprint: req.relayFingerprint ?? relay.fingerprint,
          pins,
          socket,
          ...options,
        });
        trusts.push(connection.trust);
        return connection.session;
      },
    })),
  });
  // Always: the pins' lastSeen moved (save() writes only what changed, over what is on disk).
  if (trusts.length > 0) await pins.save();
  const first = result.observations.find((o) => o.observedAddress !== undefined);
  // reflectFromOneSocket rejects when nothing answered, so there is a first answer.
  if (!first?.observedAddress) throw new InternalError('reflect resolved without any answer');
  return {
    observedAddress: first.observedAddress,
    relay: first.relay,
    fingerprint: first.fingerprint,
    rttMs: first.rttMs ?? 0,
    ...result,
  };
}

/**
 * One socket has one address family: IPv4 when every target has an IPv4 address (names may
 * have both), else IPv6 when every target has one. Returns the STUN endpoints and the relays'
 * addresses of that family.
 */
async function chooseFamily(relays: string[], stun: string[]): Promise<{ family: AddressFamily; stun: Endpoint[]; relays: Endpoint[] }> {
  const relayAddresses = await Promise.all(relays.map(resolveEndpoints));
  const stunAddresses = await Promise.all(stun.map(resolveEndpoints));
  const all = [...relayAddresses, ...stunAddresses];
  for (const family of ['IPv4', 'IPv6'] as const) {
    const pick = (endpoints: Endpoint[]) => endpoints.find((e) => (family === 'IPv4') === !e.address.includes(':'));
    if (all.every((endpoints) => pick(endpoints) !== undefined)) {
      return { family, stun: stunAddresses.map((endpoints) => pick(endpoints) as Endpoint), relays: relayAddresses.map((endpoints) => pick(endpoints) as Endpoint) };
    }
  }
  throw new UsageError('the servers mix IPv4-only and IPv6-only addresses, but one socket has one address family', {
    suggestions: ['run reflect once for the IPv4 servers and once for the IPv6 ones'],
  });
}
