/**
 * `wzp portmap probe|add|list|delete` over core/nat/portmap.ts.
 *
 * Mappings this host makes are recorded in `<configDir>/port-mappings.json` (mode 0600) until
 * they are deleted or expire: PCP can only delete a mapping with the nonce it was made with,
 * and NAT-PMP deletes by internal port, so `delete --protocol P --external-port N` needs
 * what `add` knew. The JSON an `add --json` printed works as well (`--mapping`).
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { hasErrorCode, writePrivateFile } from '../../core/crypto/identity.js';
import { ConfigError, UsageError, errorMessage } from '../../core/errors.js';
import { resolveGateway } from '../../core/nat/gateway.js';
import { type PortMapEvent, PortMapper, type PortMapping, type PortMapProtocol, type ProbeResult, type UpnpListEntry } from '../../core/nat/portmap.js';
import { findUpnpGateway, upnpList } from '../../core/nat/upnp.js';

export const PORT_MAPPINGS_FILE = 'port-mappings.json';
const RECORD_FILE_VERSION = 1;
export const PROTOCOLS: readonly PortMapProtocol[] = ['pcp', 'natpmp', 'upnp'];
export const PROTOCOL_NAMES: Record<PortMapProtocol, string> = { pcp: 'PCP', natpmp: 'NAT-PMP', upnp: 'UPnP' };

/** One line for people: `UDP 203.0.113.1:52001 -> 10.0.0.2:4433 with PCP`. */
export function describeMapping(m: PortMapping): string {
  return `UDP ${m.externalAddress}:${m.externalPort} -> ${'internalAddress' in m ? m.internalAddress : 'this host'}:${m.internalPort} with ${PROTOCOL_NAMES[m.protocol]}`;
}

/** Lifetimes asked for by default: short when kept alive (a crash leaves little open). */
export const DEFAULT_LIFETIME_S = { kept: 120, left: 3600 } as const;

export interface RecordedMapping {
  mapping: PortMapping;
  createdAt: string;
  /** null for a permanent UPnP lease. */
  expiresAt: string | null;
}

interface Common {
  configDir: string;
  gateway?: string;
  signal?: AbortSignal;
}

/**
 * `--gateway` must be an IPv4 address: checked before any work, so a typo is a usage error
 * (exit 2) naming the value, never a failed probe or an empty table reported with exit 0.
 */
export function checkGatewayFlag(gateway: string | undefined): void {
  if (gateway !== undefined && isIP(gateway) !== 4) {
    throw new UsageError(`--gateway "${gateway}" is not an IPv4 address`, {
      suggestions: ["give the gateway's IPv4 address, e.g. --gateway 192.168.1.1, or leave --gateway out to use the default route's"],
    });
  }
}

// ---------------------------------------------------------------------------------------------
// probe

export interface PortmapProbeReport extends ProbeResult {
  /** Protocols that answered, in preference order. */
  available: PortMapProtocol[];
  durationMs: number;
}

export async function probePortMapping(req: Common): Promise<PortmapProbeReport> {
  checkGatewayFlag(req.gateway);
  const t0 = performance.now();
  const probe = await new PortMapper({ gateway: req.gateway }).probe({ signal: req.signal });
  return { ...probe, available: PROTOCOLS.filter((p) => probe.protocols[p].available), durationMs: Math.round(performance.now() - t0) };
}

// ---------------------------------------------------------------------------------------------
// add

export interface PortmapAddRequest extends Common {
  internalPort: number;
  externalPort?: number;
  lifetimeS?: number;
  /** Protocols to try, in order (default PCP, NAT-PMP, UPnP). */
  protocols?: PortMapProtocol[];
  keep: boolean;
  onMapped?(mapping: PortMapping): void;
  onRenewed?(mapping: PortMapping): void;
}

export interface PortmapAddReport {
  /** The mapping as made (or, with --keep, as last renewed). */
  mapping: PortMapping;
  kept: boolean;
  renewals: number;
  /** True when the mapping was deleted before exiting (--keep, after Ctrl-C). */
  deleted: boolean;
  /** When a mapping left in place expires (null: permanent UPnP lease); absent once deleted. */
  expiresAt?: string | null;
  recordFile: string;
  /** The command that deletes it (absent once deleted). */
  deleteWith?: string;
}

export async function addPortMapping(req: PortmapAddRequest): Promise<PortmapAddReport> {
  checkGatewayFlag(req.gateway);
  let renewals = 0;
  const records = recordFile(req.configDir);
  const mapper = new PortMapper({
    gateway: req.gateway,
    onProgress: (event: PortMapEvent) => {
      if (event.type !== 'portmap:renewed') return;
      renewals++;
      req.onRenewed?.(event.mapping);
      void replaceRecord(req.configDir, event.mapping).catch(() => undefined); // best effort: the next renewal retries
    },
  });
  const lifetimeS = req.lifetimeS ?? (req.keep ? DEFAULT_LIFETIME_S.kept : DEFAULT_LIFETIME_S.left);
  const mapping = await mapper.add(
    { internalPort: req.internalPort, externalPort: req.externalPort, lifetimeS, preference: req.protocols, description: 'wzp' },
    { signal: req.signal },
  );
  const recorded = await replaceRecord(req.configDir, mapping);
  req.onMapped?.(mapping);
  if (!req.keep) {
    return { mapping, kept: false, renewals: 0, deleted: false, expiresAt: recorded.expiresAt, recordFile: records, deleteWith: deleteCommand(mapping) };
  }
  if (!req.signal) throw new UsageError('keeping a mapping needs a signal to stop on');
  let last = mapping;
  try {
    last = await mapper.keep(mapping, { signal: req.signal });
  } finally {
    await removeRecord(req.configDir, last);
  }
  return { mapping: last, kept: true, renewals, deleted: true, recordFile: records };
}

function deleteCommand(mapping: PortMapping): string {
  return mapping.protocol === 'natpmp'
    ? `wzp portmap delete --protocol natpmp --internal-port ${mapping.internalPort}`
    : `wzp portmap delete --protocol ${mapping.protocol} --external-port ${mapping.externalPort}`;
}

// ---------------------------------------------------------------------------------------------
// list

export interface PortmapListReport {
  /** Mappings this host made with wzp and has not deleted (expired ones dropped). */
  recorded: RecordedMapping[];
  recordFile: string;
  /** The UPnP IGD's table (all hosts; miniupnpd-style gateways list PCP/NAT-PMP ones too). */
  gatewayTable: { entries: UpnpListEntry[] } | { error: { name: string; message: string } };
}

export async function listPortMappings(req: Common): Promise<PortmapListReport> {
  checkGatewayFlag(req.gateway);
  const recorded = await readRecords(req.configDir);
  let gatewayTable: PortmapListReport['gatewayTable'];
  try {
    gatewayTable = { entries: await new PortMapper({ gateway: req.gateway }).list({ signal: req.signal }) };
  } catch (err) {
    if (req.signal?.aborted) throw err;
    gatewayTable = { error: { name: err instanceof Error ? err.name : 'Error', message: errorMessage(err) } };
  }
  return { recorded, recordFile: recordFile(req.configDir), gatewayTable };
}

// ---------------------------------------------------------------------------------------------
// delete

export interface PortmapDeleteRequest extends Common {
  protocol?: PortMapProtocol;
  externalPort?: number;
  internalPort?: number;
  /** A mapping's JSON (or an `add --json` document): the text itself. */
  mappingJson?: string;
}

export interface PortmapDeleteReport {
  protocol: PortMapProtocol;
  gateway: string;
  externalPort?: number;
  internalPort: number;
  /** Where the mapping's details came from. */
  source: 'mapping-json' | 'record' | 'gateway-table' | 'internal-port';
  /** False when the gateway's UPnP table has no such mapping: nothing to delete. */
  found: boolean;
}

export async function deletePortMapping(req: PortmapDeleteRequest): Promise<PortmapDeleteReport> {
  checkGatewayFlag(req.gateway);
  const mapper = new PortMapper({ gateway: req.gateway });
  const done = async (mapping: PortMapping, source: PortmapDeleteReport['source']): Promise<PortmapDeleteReport> => {
    await mapper.delete(mapping, { signal: req.signal });
    await removeRecord(req.configDir, mapping);
    return { protocol: mapping.protocol, gateway: mapping.gateway, externalPort: mapping.externalPort, internalPort: mapping.internalPort, source, found: true };
  };
  if (req.mappingJson !== undefined) return done(parseMappingJson(req.mappingJson), 'mapping-json');
  if (req.protocol === undefined) {
    throw new UsageError('say which mapping to delete', {
      suggestions: ['--protocol P --external-port N (a mapping wzp made here)', '--mapping \'<the JSON `wzp portmap add --json` printed>\''],
    });
  }
  const recorded = (await readRecords(req.configDir)).find(
    ({ mapping }) =>
      mapping.protocol === req.protocol &&
      (req.externalPort === undefined || mapping.externalPort === req.externalPort) &&
      (req.internalPort === undefined || mapping.internalPort === req.internalPort) &&
      (req.gateway === undefined || mapping.gateway === req.gateway),
  );
  if (recorded) return done(recorded.mapping, 'record');
  if (req.externalPort === undefined && req.internalPort === undefined) throw new UsageError('give --external-port (or --internal-port for NAT-PMP)');
  switch (req.protocol) {
    case 'pcp':
      throw new UsageError(`no PCP mapping on external port ${req.externalPort} is recorded in ${recordFile(req.configDir)}`, {
        suggestions: ['PCP deletes a mapping only with the nonce it was made with: pass the JSON `wzp portmap add --json` printed with --mapping', 'or let it expire'],
      });
    case 'natpmp': {
      if (req.internalPort === undefined) {
        throw new UsageError('NAT-PMP deletes by internal port: give --internal-port', { suggestions: ['the internal port is the local port that was mapped'] });
      }
      const gateway = await resolveGateway(req.gateway, { signal: req.signal });
      // A NAT-PMP delete names only the internal port (RFC 6886 §3.4): the rest is not sent.
      await mapper.delete({ protocol: 'natpmp', gateway, internalPort: req.internalPort, externalPort: 0, externalAddress: '', lifetimeS: 0 }, { signal: req.signal });
      return { protocol: 'natpmp', gateway, internalPort: req.internalPort, source: 'internal-port', found: true };
    }
    case 'upnp': {
      if (req.externalPort === undefined) throw new UsageError('UPnP deletes by external port: give --external-port');
      const igd = await findUpnpGateway({ gateway: req.gateway, signal: req.signal });
      const gateway = new URL(igd.service.controlUrl).hostname;
      const row = (await upnpList(igd, { signal: req.signal })).find((e) => e.externalPort === req.externalPort && e.protocol === 'UDP');
      if (!row) return { protocol: 'upnp', gateway, externalPort: req.externalPort, internalPort: req.internalPort ?? 0, source: 'gateway-table', found: false };
      // DeletePortMapping names the service and the external port; the rest is the table's row.
      return done(
        {
          protocol: 'upnp',
          gateway,
          service: igd.service,
          internalAddress: row.internalClient,
          internalPort: row.internalPort,
          externalAddress: '',
          externalPort: row.externalPort,
          lifetimeS: row.leaseDurationS,
        },
        'gateway-table',
      );
    }
  }
}

/** `--mapping` argument: the JSON itself, `@FILE`, or `-` for standard input. */
export async function readMappingArgument(value: string): Promise<string> {
  if (value === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }
  if (!value.startsWith('@')) return value;
  const path = value.slice(1);
  const suggestions = ['give the file `wzp portmap add --json` wrote (--mapping @FILE), the JSON itself, or - to read it from stdin'];
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    // A local file that is missing or unreadable: ConfigError (exit 3, docs/exit-codes.md).
    throw new ConfigError(`cannot read ${path}: ${errorMessage(err)}`, { cause: err, suggestions });
  }
  try {
    parseMappingJson(text);
  } catch (err) {
    // A local file that is not a mapping is a corrupt file (exit 3), not a bad command line.
    throw new ConfigError(`${path} does not hold a port mapping: ${errorMessage(err)}`, { cause: err, suggestions });
  }
  return text;
}

/** A mapping from `add --json` output: the whole document, its result, or the mapping itself. */
export function parseMappingJson(text: string): PortMapping {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--mapping is not JSON: ${errorMessage(err)}`, { cause: err });
  }
  const candidate = dig(doc, ['result', 'mapping']) ?? dig(doc, ['mapping']) ?? doc;
  return checkMapping(candidate, (why) => new UsageError(`--mapping: ${why}`, { suggestions: ['pass the JSON `wzp portmap add --json` printed (or its "mapping")'] }));
}

function dig(doc: unknown, path: string[]): unknown {
  let at = doc;
  for (const key of path) {
    if (!isRecord(at) || !(key in at)) return undefined;
    at = at[key];
  }
  return at;
}

/** Validates a mapping's fields for its protocol (from a user's JSON or the record file). */
function checkMapping(value: unknown, fail: (why: string) => Error): PortMapping {
  if (!isRecord(value)) throw fail('not an object');
  const { protocol } = value;
  if (protocol !== 'pcp' && protocol !== 'natpmp' && protocol !== 'upnp') throw fail(`"protocol" must be pcp, natpmp or upnp`);
  const port = (key: string, min: number) => {
    const v = value[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > 65535) throw fail(`"${key}" is not a port number`);
  };
  const text = (key: string) => {
    if (typeof value[key] !== 'string') throw fail(`"${key}" is missing`);
  };
  text('gateway');
  text('externalAddress');
  port('internalPort', 1);
  port('externalPort', 0);
  if (typeof value.lifetimeS !== 'number' || value.lifetimeS < 0) throw fail('"lifetimeS" is not a number of seconds');
  if (protocol === 'pcp') {
    text('internalAddress');
    if (typeof value.nonce !== 'string' || !/^[0-9a-f]{24}$/i.test(value.nonce)) throw fail('"nonce" is not 12 bytes of hex');
  }
  if (protocol === 'upnp') {
    text('internalAddress');
    const service = value.service;
    if (!isRecord(service) || typeof service.controlUrl !== 'string' || typeof service.serviceType !== 'string' || (service.igdVersion !== 1 && service.igdVersion !== 2)) {
      throw fail('"service" is not a UPnP service (serviceType, controlUrl, igdVersion)');
    }
  }
  return value as unknown as PortMapping;
}

// ---------------------------------------------------------------------------------------------
// The record file

export function recordFile(configDir: string): string {
  return join(configDir, PORT_MAPPINGS_FILE);
}

/** Records that have not expired; a corrupt file is a ConfigError (never dropped silently). */
export async function readRecords(configDir: string, now = Date.now()): Promise<RecordedMapping[]> {
  const path = recordFile(configDir);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (hasErrorCode(err, 'ENOENT')) return [];
    throw new ConfigError(`cannot read ${path}: ${errorMessage(err)}`, { cause: err });
  }
  const corrupt = (why: string) => new ConfigError(`${path} is corrupt: ${why}`, { suggestions: [`delete ${path} (mappings it lists expire by themselves)`] });
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw corrupt(errorMessage(err));
  }
  if (!isRecord(doc) || doc.version !== RECORD_FILE_VERSION || !Array.isArray(doc.mappings)) throw corrupt(`expected {"version": ${RECORD_FILE_VERSION}, "mappings": [...]}`);
  return doc.mappings
    .map((entry, i): RecordedMapping => {
      if (!isRecord(entry) || typeof entry.createdAt !== 'string' || !(typeof entry.expiresAt === 'string' || entry.expiresAt === null)) {
        throw corrupt(`mappings[${i}] lacks createdAt/expiresAt`);
      }
      return { mapping: checkMapping(entry.mapping, (why) => corrupt(`mappings[${i}]: ${why}`)), createdAt: entry.createdAt, expiresAt: entry.expiresAt };
    })
    .filter((r) => r.expiresAt === null || Date.parse(r.expiresAt) > now);
}

async function writeRecords(configDir: string, records: RecordedMapping[]): Promise<void> {
  const path = recordFile(configDir);
  try {
    await writePrivateFile(path, `${JSON.stringify({ version: RECORD_FILE_VERSION, mappings: records }, null, 2)}\n`, { overwrite: true });
  } catch (err) {
    throw new ConfigError(`cannot write ${path}: ${errorMessage(err)}`, { cause: err });
  }
}

function sameMapping(a: PortMapping, b: PortMapping): boolean {
  return a.protocol === b.protocol && a.gateway === b.gateway && a.internalPort === b.internalPort;
}

/** Records `mapping`, replacing the record of the same protocol, gateway and internal port. */
export async function replaceRecord(configDir: string, mapping: PortMapping, now = new Date()): Promise<RecordedMapping> {
  const records = await readRecords(configDir, now.getTime());
  const previous = records.find((r) => sameMapping(r.mapping, mapping));
  const record: RecordedMapping = {
    mapping,
    createdAt: previous?.createdAt ?? now.toISOString(),
    expiresAt: mapping.lifetimeS === 0 ? null : new Date(now.getTime() + mapping.lifetimeS * 1000).toISOString(),
  };
  await writeRecords(configDir, [...records.filter((r) => r !== previous), record]);
  return record;
}

export async function removeRecord(configDir: string, mapping: PortMapping): Promise<void> {
  const records = await readRecords(configDir);
  const kept = records.filter((r) => !sameMapping(r.mapping, mapping));
  if (kept.length !== records.length) await writeRecords(configDir, kept);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
