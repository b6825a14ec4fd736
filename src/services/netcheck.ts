/**
 * `wzp netcheck`: pick the servers (flags, else netcheck.json; never built-in ones), resolve
 * them, run core/nat/netcheck.ts with relays trusted through the pin store, and wrap the
 * result in a report a support team can read: schema version, wzp version, time, host facts
 * and the flags used (docs/netcheck.md, docs/schemas/netcheck-report.schema.json).
 */
import { hostname, networkInterfaces, release } from 'node:os';
import { type NetcheckEvent, type NetcheckResult, runNetcheck } from '../../core/nat/netcheck.js';
import type { Endpoint } from '../../core/nat/stun.js';
import { PinStore } from '../../core/transport/pin-store.js';
import { loadNatConfig, noServersError, resolveEndpoints, selectServers, type ServerSource } from './nat-config.js';
import { pinFile } from './paths.js';
import { connectToRelay } from './relay-connect.js';
import { errorMessage } from '../../core/errors.js';

export const NETCHECK_SCHEMA_VERSION = 1;

export interface NetcheckRequest {
  stun?: string[];
  relays?: string[];
  gateway?: string;
  portMapping: boolean;
  predictCount: number;
  deadlineMs: number;
  /** Opt-in binding-lifetime measurement, at most this long (ms). */
  bindingLifetimeMaxMs?: number;
  configDir: string;
  wzpVersion: string;
  /** The command line's flags, recorded in the report as given. */
  flags: Record<string, unknown>;
  signal?: AbortSignal;
  onProgress?: (event: NetcheckEvent) => void;
}

export interface HostFacts {
  hostname: string;
  platform: string;
  arch: string;
  osRelease: string;
  nodeVersion: string;
  addresses: { interface: string; family: 'IPv4' | 'IPv6'; address: string; cidr: string | null; internal: boolean }[];
}

export interface NetcheckReport extends NetcheckResult {
  schemaVersion: number;
  wzpVersion: string;
  /** When the check started, ISO 8601. */
  time: string;
  host: HostFacts;
  flags: Record<string, unknown>;
  servers: {
    stun: string[];
    relays: { address: string; pinned: boolean }[];
    source: { stun: ServerSource; relays: ServerSource };
    configFile: string;
    /** STUN servers whose names did not resolve (left out of the check). */
    unresolved: { server: string; error: string }[];
  };
}

export async function netcheck(req: NetcheckRequest): Promise<NetcheckReport> {
  const time = new Date().toISOString();
  const loaded = await loadNatConfig(req.configDir);
  const servers = selectServers({ stun: req.stun, relay: req.relays }, loaded);
  if (servers.stun.length === 0 && servers.relays.length === 0) throw noServersError('netcheck', servers.configFile, 'any', 'pass --stun HOST:PORT and/or --relay HOST:PORT (repeatable, or comma-separated)');

  const unresolved: NetcheckReport['servers']['unresolved'] = [];
  const stun = (
    await Promise.all(
      servers.stun.map(async (server) => {
        try {
          return onePerFamily(await resolveEndpoints(server));
        } catch (err) {
          unresolved.push({ server, error: errorMessage(err) });
          return [];
        }
      }),
    )
  ).flat();

  const pins = await PinStore.open(pinFile(req.configDir));
  const trusts: string[] = [];
  const result = await runNetcheck({
    stun,
    portMapping: req.portMapping ? { gateway: req.gateway } : false,
    predictCount: req.predictCount,
    deadlineMs: req.deadlineMs,
    bindingLifetimeMaxMs: req.bindingLifetimeMaxMs,
    signal: req.signal,
    onProgress: req.onProgress,
    relays: servers.relays.map((relay) => ({
      label: relay.address,
      connect: async (socket, options) => {
        const connection = await connectToRelay({ relay: relay.address, configDir: req.configDir, relayFingerprint: relay.fingerprint, pins, socket, ...options });
        trusts.push(connection.trust);
        return connection.session;
      },
    })),
  });
  if (trusts.some((t) => t !== 'match')) await pins.save();

  return {
    schemaVersion: NETCHECK_SCHEMA_VERSION,
    wzpVersion: req.wzpVersion,
    time,
    host: hostFacts(),
    flags: req.flags,
    servers: {
      stun: servers.stun,
      relays: servers.relays.map((r) => ({ address: r.address, pinned: r.fingerprint !== undefined })),
      source: servers.source,
      configFile: servers.configFile,
      unresolved,
    },
    ...result,
  };
}

/** A name may resolve to several addresses: test one of each family. */
function onePerFamily(endpoints: Endpoint[]): Endpoint[] {
  const v4 = endpoints.find((e) => !e.address.includes(':'));
  const v6 = endpoints.find((e) => e.address.includes(':'));
  return [v4, v6].filter((e): e is Endpoint => e !== undefined);
}

function hostFacts(): HostFacts {
  const addresses = Object.entries(networkInterfaces()).flatMap(([name, list]) =>
    (list ?? []).map((a) => ({ interface: name, family: a.family, address: a.address, cidr: a.cidr, internal: a.internal })),
  );
  return { hostname: hostname(), platform: process.platform, arch: process.arch, osRelease: release(), nodeVersion: process.version, addresses };
}
