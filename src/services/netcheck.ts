/**
 * `wzp netcheck`: pick the servers (flags, else netcheck.json; never built-in ones), resolve
 * them, run core/nat/netcheck.ts with relays trusted through the pin store, and wrap the
 * result in a report a support team can read: the `meta` block every attachable report
 * carries (src/services/report-meta.ts: schema version, wzp version, time, host facts, flags),
 * this host's interface addresses and the servers used (docs/netcheck.md,
 * docs/schemas/netcheck-report.schema.json).
 */
import type { NatStrategy } from '../../core/nat/strategy-types.js';
import { networkInterfaces } from 'node:os';
import { type NetcheckEvent, type NetcheckRelay, type NetcheckResult, runNetcheck } from '../../core/nat/netcheck.js';
import type { Endpoint } from '../../core/nat/stun.js';
import { PinStore } from '../../core/transport/pin-store.js';
import { loadNatConfig, noServersError, resolveEndpoints, selectServers, type ServerSource } from './nat-config.js';
import { pinFile } from './paths.js';
import { connectToRelay } from './relay-connect.js';
import type { ReportMeta } from './report-meta.js';
import { errorMessage } from '../../core/errors.js';
import { checkGatewayFlag } from './portmap.js';

/**
 * 2: the report's facts about itself moved into `meta` (ReportMeta, as every attachable
 * report's): `schemaVersion`, `wzpVersion`, `host` and `flags` from the top level, `time`
 * became `meta.generatedAt`, `host.addresses` became `interfaces`; verdict `no-nat`.
 */
export const NETCHECK_SCHEMA_VERSION = 2;

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
  /** The report's `meta` block (the command's flags, wzp version, host facts). */
  meta(schemaVersion: number): ReportMeta;
  signal?: AbortSignal;
  onProgress?: (event: NetcheckEvent) => void;
  /** The installed hard-NAT strategies: the verdict names those that apply here. */
  strategies?: readonly NatStrategy[];
}

/** One address of one of this host's interfaces (os.networkInterfaces()). */
export interface InterfaceAddress {
  interface: string;
  family: 'IPv4' | 'IPv6';
  address: string;
  cidr: string | null;
  internal: boolean;
}

export interface NetcheckReport extends NetcheckResult {
  meta: ReportMeta;
  /** Every address of this host's interfaces: what STUN answers are compared with. */
  interfaces: InterfaceAddress[];
  servers: {
    stun: string[];
    relays: { address: string; pinned: boolean }[];
    source: { stun: ServerSource; relays: ServerSource };
    configFile: string;
    /** STUN servers and relays whose names did not resolve (STUN servers are left out, relays fail). */
    unresolved: { server: string; error: string }[];
  };
}

export async function netcheck(req: NetcheckRequest): Promise<NetcheckReport> {
  checkGatewayFlag(req.gateway);
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
  const relays = await Promise.all(
    servers.relays.map(async (relay): Promise<NetcheckRelay> => {
      let endpoint: Endpoint | undefined;
      let unresolvable: unknown;
      try {
        // IPv4 when the name has it (behaviour and allocation prefer IPv4), else IPv6.
        const found = await resolveEndpoints(relay.address);
        endpoint = found.find((e) => !e.address.includes(':')) ?? found[0];
      } catch (err) {
        unresolvable = err;
        unresolved.push({ server: relay.address, error: errorMessage(err) });
      }
      return {
        label: relay.address,
        ...(endpoint ? { endpoint } : {}),
        connect: async (socket, options) => {
          if (unresolvable !== undefined) throw unresolvable;
          const connection = await connectToRelay({ relay: relay.address, configDir: req.configDir, relayFingerprint: relay.fingerprint, pins, socket, ...options });
          trusts.push(connection.trust);
          return connection.session;
        },
      };
    }),
  );
  const result = await runNetcheck({
    stun,
    portMapping: req.portMapping ? { gateway: req.gateway } : false,
    predictCount: req.predictCount,
    deadlineMs: req.deadlineMs,
    bindingLifetimeMaxMs: req.bindingLifetimeMaxMs,
    signal: req.signal,
    onProgress: req.onProgress,
    relays,
    ...(req.strategies ? { strategies: req.strategies } : {}),
  });
  // Always: the pins' lastSeen moved (save() writes only what changed, over what is on disk).
  if (trusts.length > 0) await pins.save();

  return {
    meta: req.meta(NETCHECK_SCHEMA_VERSION),
    interfaces: interfaceAddresses(),
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

function interfaceAddresses(): InterfaceAddress[] {
  return Object.entries(networkInterfaces()).flatMap(([name, list]) =>
    (list ?? []).map((a) => ({ interface: name, family: a.family, address: a.address, cidr: a.cidr, internal: a.internal })),
  );
}
