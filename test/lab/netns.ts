/**
 * The NAT lab: network namespaces joined by veth pairs, an nftables NAT in a router namespace,
 * and coturn as an RFC 5780 STUN server. Nothing touches the host's interfaces: every veth is
 * created directly inside the lab's own namespaces, and every address (203.0.113.0/24,
 * 10.77.0.0/24) exists only there. Needs root, `ip`, `nft`, `conntrack`, `ss`, `turnserver`.
 *
 * ```
 *  client ns                 router ns                         wan ns
 *  eth0 10.77.0.2 ──── lan0 10.77.0.1 │ wan0 203.0.113.100 ──── srv0 203.0.113.1, .2
 *       default via .1          nftables NAT (one mode)          coturn :3478/:3479 (+2 per
 *                                                                 extra instance)
 * ```
 * The 'none' topology joins the client (eth0 203.0.113.50) straight to the wan namespace.
 * Names carry a random suffix so parallel runs never collide; destroy() removes everything,
 * and a process 'exit' hook removes what a crashed test left behind.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Endpoint } from '../../core/nat/stun.js';

const execFileAsync = promisify(execFile);

export type NatMode = 'full-cone' | 'address-restricted' | 'port-restricted' | 'symmetric-random' | 'symmetric-sequential';
export const NAT_MODES: readonly NatMode[] = ['full-cone', 'address-restricted', 'port-restricted', 'symmetric-random', 'symmetric-sequential'];
export type LabTopology = NatMode | 'none';

export const LAB_NET = {
  stunPrimary: '203.0.113.1',
  stunAlternate: '203.0.113.2',
  routerWan: '203.0.113.100',
  directClient: '203.0.113.50',
  wanPrefixLength: 24,
  lanSubnet: '10.77.0.0/24',
  routerLan: '10.77.0.1',
  client: '10.77.0.2',
  lanPrefixLength: 24,
  stunBasePort: 3478,
  /** symmetric-sequential hands out ports from here, one per new mapping. */
  sequentialPortBase: 40000,
  sequentialPortCount: 256,
  /** How long full-cone / address-restricted remember a learned mapping. */
  learnedMappingTimeoutS: 60,
} as const;

/** Interface names inside the namespaces (never in the host's namespace). */
const IF = { server: 'srv0', routerWan: 'wan0', routerLan: 'lan0', client: 'eth0' } as const;

const TOOLS = ['ip', 'nft', 'conntrack', 'ss', 'sh', 'turnserver'] as const;
export type Tool = (typeof TOOLS)[number];
const EXTRA_TOOL_DIRS = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];
const COMMAND_TIMEOUT_MS = 10_000;
const RUNNER = fileURLToPath(new URL('./nat-runner.js', import.meta.url));

export type LabAvailability = { ok: true } | { ok: false; reason: string };

function findTool(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...EXTRA_TOOL_DIRS];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** Absolute paths of the lab's tools, or which are missing. */
export function toolPaths(): Record<Tool, string> | { missing: Tool[] } {
  const found = Object.fromEntries(TOOLS.map((t) => [t, findTool(t)]));
  const missing = TOOLS.filter((t) => found[t] === undefined);
  return missing.length > 0 ? { missing } : (found as Record<Tool, string>);
}

/** Whether lab tests can run here; tests skip with `reason` when not. */
export async function labAvailable(): Promise<LabAvailability> {
  if (process.platform !== 'linux') return { ok: false, reason: 'the NAT lab needs Linux network namespaces' };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'the NAT lab needs root (network namespaces, nftables)' };
  const tools = toolPaths();
  if ('missing' in tools) return { ok: false, reason: `the NAT lab needs ${tools.missing.join(', ')} (iproute2, nftables, conntrack, coturn)` };
  const probe = `wzp-probe-${randomBytes(4).toString('hex')}`;
  try {
    await execFileAsync(tools.ip, ['netns', 'add', probe], { timeout: COMMAND_TIMEOUT_MS });
    await execFileAsync(tools.ip, ['netns', 'del', probe], { timeout: COMMAND_TIMEOUT_MS });
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: `cannot create a network namespace: ${(err as Error).message.split('\n')[0]}` };
  }
}

/**
 * The nftables ruleset for a NAT mode, for the router namespace. Only packets from the LAN
 * subnet leaving through the WAN interface are translated.
 *  - port-restricted: plain masquerade (conntrack): endpoint-independent mapping, port
 *    preserved when free, address-and-port-dependent filtering.
 *  - symmetric-random: masquerade fully-random: a new random port per destination.
 *  - symmetric-sequential: snat to the next port of a pool per new conntrack entry. The port
 *    comes from a numgen-indexed map: nft 1.0.6 writes the port byte-swapped with the plain
 *    `numgen inc mod N offset BASE` form.
 *  - full-cone / address-restricted: masquerade plus a learned mapping: a dynamic map records
 *    external port -> client address.port on every outbound packet (after SNAT), and inbound
 *    packets to a learned port are DNATed to the client (kernel conntrack has no full-cone
 *    mode). address-restricted also records (external port, remote IP) and lets in only
 *    remotes the client has sent to.
 *
 * `net` places the NAT (default: NatLab's router). With `filterBeforeConntrack` the
 * address-restricted NAT drops unsolicited inbound UDP before conntrack sees it: without it,
 * a filtered packet leaves a conntrack entry (to the router itself) that keeps its 5-tuple
 * from ever being DNATed, even after the client has contacted that remote address; a real
 * address-restricted NAT keeps no such state.
 */
export function natRuleset(mode: NatMode, net: NatRouterNet = NATLAB_ROUTER): string {
  const lan = `oifname "${net.wanIf}" ip saddr ${net.lanSubnet}`;
  const outbound = {
    'port-restricted': `${lan} masquerade`,
    'symmetric-random': `${lan} masquerade random,fully-random`,
    'symmetric-sequential': `${lan} meta l4proto udp snat ip to ${net.wanAddress} : numgen inc mod ${LAB_NET.sequentialPortCount} map { ${sequentialPortMap()} }`,
    'full-cone': `${lan} masquerade`,
    'address-restricted': `${lan} masquerade`,
  }[mode];
  const learned = mode === 'full-cone' || mode === 'address-restricted';
  const lines = [
    'table ip wzp_nat {',
    ...(learned ? learnedMappingSets(mode === 'address-restricted') : []),
    `  chain postrouting { type nat hook postrouting priority srcnat; policy accept; ${outbound}; }`,
  ];
  if (learned) {
    const allow = mode === 'address-restricted' ? 'udp dport . ip saddr @contacted ' : '';
    lines.push(
      `  chain prerouting { type nat hook prerouting priority dstnat; policy accept; iifname "${net.wanIf}" ip daddr ${net.wanAddress} ${allow}dnat ip to udp dport map @mappings; }`,
      `  chain learn { type filter hook postrouting priority srcnat + 10; policy accept; oifname "${net.wanIf}" ct original ip saddr ${net.lanSubnet} meta l4proto udp ${learnRules(mode === 'address-restricted')} }`,
    );
    if (mode === 'address-restricted' && net.filterBeforeConntrack) {
      lines.push(
        `  chain filter_unsolicited { type filter hook prerouting priority raw; policy accept; iifname "${net.wanIf}" ip daddr ${net.wanAddress} udp dport . ip saddr != @contacted drop; }`,
      );
    }
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

function sequentialPortMap(): string {
  return Array.from({ length: LAB_NET.sequentialPortCount }, (_, i) => `${i} : ${LAB_NET.sequentialPortBase + i}`).join(', ');
}

function learnedMappingSets(recordRemotes: boolean): string[] {
  const timeout = `flags dynamic,timeout; timeout ${LAB_NET.learnedMappingTimeoutS}s;`;
  const sets = [`  map mappings { type inet_service : ipv4_addr . inet_service; ${timeout} }`];
  if (recordRemotes) sets.push(`  set contacted { type inet_service . ipv4_addr; ${timeout} }`);
  return sets;
}

/** At srcnat + 10 the packet already carries the translated source port. */
function learnRules(recordRemotes: boolean): string {
  const mapping = 'update @mappings { udp sport : ct original ip saddr . ct original proto-src }';
  return recordRemotes ? `${mapping} update @contacted { udp sport . ip daddr };` : `${mapping};`;
}

/** Where a NAT ruleset applies: the router's WAN interface and address, and its LAN. */
export interface NatRouterNet {
  readonly wanIf: string;
  readonly wanAddress: string;
  readonly lanSubnet: string;
  readonly filterBeforeConntrack?: boolean;
}

const NATLAB_ROUTER: NatRouterNet = { wanIf: IF.routerWan, wanAddress: LAB_NET.routerWan, lanSubnet: LAB_NET.lanSubnet };

export interface StunInstance {
  /** Primary address (IP1, port). */
  readonly primary: Endpoint;
  /** RFC 5780 OTHER-ADDRESS (IP2, port + 1). */
  readonly other: Endpoint;
}

export interface LabOptions {
  topology: LabTopology;
  /** coturn instances, each on both IPs and its own port pair 3478+2i / 3479+2i (default 1). */
  stunInstances?: number;
  /** Router conntrack UDP timeout (unreplied and single-exchange flows), e.g. for lifetime tests. */
  conntrackUdpTimeoutS?: number;
}

interface Namespaces {
  readonly wan: string;
  readonly router?: string;
  readonly client: string;
}

const liveLabs = new Set<NatLab>();
let exitHookInstalled = false;

export class NatLab {
  private readonly coturns: ChildProcess[] = [];
  private destroyed = false;

  private constructor(
    readonly topology: LabTopology,
    readonly namespaces: Namespaces,
    readonly stun: readonly StunInstance[],
    private readonly tools: Record<Tool, string>,
    private readonly dir: string,
  ) {}

  /** Builds the topology, loads the NAT rules and starts coturn; tears down on any failure. */
  static async create(options: LabOptions): Promise<NatLab> {
    const tools = toolPaths();
    if ('missing' in tools) throw new Error(`NAT lab tools missing: ${tools.missing.join(', ')}`);
    const id = randomBytes(3).toString('hex');
    const namespaces: Namespaces = {
      wan: `wzp-${id}-wan`,
      router: options.topology === 'none' ? undefined : `wzp-${id}-rtr`,
      client: `wzp-${id}-cli`,
    };
    const instances = options.stunInstances ?? 1;
    const stun = Array.from({ length: instances }, (_, i): StunInstance => {
      const port = LAB_NET.stunBasePort + 2 * i;
      return { primary: { address: LAB_NET.stunPrimary, port }, other: { address: LAB_NET.stunAlternate, port: port + 1 } };
    });
    const lab = new NatLab(options.topology, namespaces, stun, tools, await mkdtemp(join(tmpdir(), `wzp-lab-${id}-`)));
    registerForExit(lab);
    try {
      await lab.buildTopology();
      if (options.topology !== 'none') await lab.loadNat(options.topology, options.conntrackUdpTimeoutS);
      for (const instance of stun) await lab.startCoturn(instance.primary.port);
      return lab;
    } catch (err) {
      await lab.destroy();
      throw err;
    }
  }

  /** Every endpoint the lab's STUN servers answer on, instance by instance. */
  get stunEndpoints(): Endpoint[] {
    return this.stun.flatMap(({ primary, other }) => [
      primary,
      { address: primary.address, port: other.port },
      { address: other.address, port: primary.port },
      other,
    ]);
  }

  /** Runs a command inside one of the lab's namespaces. */
  async exec(ns: string, command: string, args: readonly string[], timeoutMs = COMMAND_TIMEOUT_MS): Promise<string> {
    const { stdout } = await execFileAsync(this.tools.ip, ['netns', 'exec', ns, command, ...args], { timeout: timeoutMs });
    return stdout;
  }

  /** Runs test/lab/nat-runner.js with `request` in the client namespace and parses its JSON. */
  async runInClient<T>(request: unknown, timeoutMs = 60_000): Promise<T> {
    try {
      const stdout = await this.exec(this.namespaces.client, process.execPath, [RUNNER, JSON.stringify(request)], timeoutMs);
      return JSON.parse(stdout) as T;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`nat-runner failed: ${e.stderr?.trim() || e.stdout?.trim() || e.message}`);
    }
  }

  /** Stops coturn, deletes the namespaces and the temp dir. Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    liveLabs.delete(this);
    await Promise.all(this.coturns.map(stopProcess));
    for (const ns of Object.values(this.namespaces)) {
      if (ns) await execFileAsync(this.tools.ip, ['netns', 'del', ns], { timeout: COMMAND_TIMEOUT_MS }).catch(() => undefined);
    }
    await rm(this.dir, { recursive: true, force: true });
  }

  /** Synchronous last-resort cleanup for process exit. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const child of this.coturns) child.kill('SIGKILL');
    for (const ns of Object.values(this.namespaces)) {
      if (!ns) continue;
      try {
        execFileSync(this.tools.ip, ['netns', 'del', ns], { stdio: 'ignore', timeout: COMMAND_TIMEOUT_MS });
      } catch {
        // already gone
      }
    }
  }

  private ip(args: readonly string[]): Promise<unknown> {
    return execFileAsync(this.tools.ip, args, { timeout: COMMAND_TIMEOUT_MS });
  }

  private async buildTopology(): Promise<void> {
    const { wan, router, client } = this.namespaces;
    for (const ns of Object.values(this.namespaces)) if (ns) await this.ip(['netns', 'add', ns]);
    const wanPeer = router ?? client;
    const wanPeerIf = router ? IF.routerWan : IF.client;
    await this.ip(['link', 'add', IF.server, 'netns', wan, 'type', 'veth', 'peer', 'name', wanPeerIf, 'netns', wanPeer]);
    await this.address(wan, IF.server, `${LAB_NET.stunPrimary}/${LAB_NET.wanPrefixLength}`);
    await this.address(wan, IF.server, `${LAB_NET.stunAlternate}/${LAB_NET.wanPrefixLength}`);
    if (router) {
      await this.ip(['link', 'add', IF.routerLan, 'netns', router, 'type', 'veth', 'peer', 'name', IF.client, 'netns', client]);
      await this.address(router, IF.routerWan, `${LAB_NET.routerWan}/${LAB_NET.wanPrefixLength}`);
      await this.address(router, IF.routerLan, `${LAB_NET.routerLan}/${LAB_NET.lanPrefixLength}`);
      await this.address(client, IF.client, `${LAB_NET.client}/${LAB_NET.lanPrefixLength}`);
    } else {
      await this.address(client, IF.client, `${LAB_NET.directClient}/${LAB_NET.wanPrefixLength}`);
    }
    for (const [ns, ifs] of [
      [wan, [IF.server]],
      [router, [IF.routerWan, IF.routerLan]],
      [client, [IF.client]],
    ] as const) {
      if (!ns) continue;
      for (const name of ['lo', ...ifs]) await this.ip(['-n', ns, 'link', 'set', name, 'up']);
    }
    await this.waitForCarrier();
    if (router) {
      await this.ip(['-n', client, 'route', 'add', 'default', 'via', LAB_NET.routerLan]);
      await this.sysctl(router, ['net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);
    }
  }

  /** A new veth pair reports carrier a moment after both ends are up (bounded: 5 s). */
  private async waitForCarrier(): Promise<void> {
    for (let attempt = 0; attempt < 250; attempt++) {
      const links = await Promise.all(
        Object.values(this.namespaces)
          .filter((ns): ns is string => ns !== undefined)
          .map(async (ns) => (await execFileAsync(this.tools.ip, ['-n', ns, '-o', 'link', 'show', 'type', 'veth'], { timeout: COMMAND_TIMEOUT_MS })).stdout),
      );
      if (links.every((list) => !list.includes('NO-CARRIER') && !list.includes('state DOWN'))) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error('lab veth links did not come up within 5 s');
  }

  private address(ns: string, ifname: string, cidr: string): Promise<unknown> {
    return this.ip(['-n', ns, 'addr', 'add', cidr, 'dev', ifname]);
  }

  private sysctl(ns: string, settings: readonly string[]): Promise<void> {
    return writeSysctl(this.tools, ns, settings);
  }

  private async loadNat(mode: NatMode, conntrackUdpTimeoutS?: number): Promise<void> {
    const router = this.namespaces.router as string;
    const rules = join(this.dir, 'nat.nft');
    await writeFile(rules, natRuleset(mode));
    await this.exec(router, this.tools.nft, ['-f', rules]);
    if (conntrackUdpTimeoutS !== undefined) await this.sysctl(router, [`net.netfilter.nf_conntrack_udp_timeout=${conntrackUdpTimeoutS}`]);
    await this.exec(router, this.tools.conntrack, ['-F']).catch(() => undefined); // empty table: exits 0 or 1 by version
  }

  private async startCoturn(port: number): Promise<void> {
    this.coturns.push(await startCoturn(this.tools, this.namespaces.wan, this.dir, [LAB_NET.stunPrimary, LAB_NET.stunAlternate], port));
  }
}

/** Writes `key=value` settings to the namespace's /proc/sys in one shell (procps may be missing in CI). */
export async function writeSysctl(tools: Record<Tool, string>, ns: string, settings: readonly string[]): Promise<void> {
  if (settings.length === 0) return;
  const pairs = settings.flatMap((setting) => {
    const [key, value] = setting.split('=');
    return [`/proc/sys/${key.replaceAll('.', '/')}`, value];
  });
  const script = 'while [ "$#" -gt 0 ]; do printf "%s\\n" "$2" > "$1" || exit 1; shift 2; done';
  await execFileAsync(tools.ip, ['netns', 'exec', ns, tools.sh, '-c', script, 'sh', ...pairs], { timeout: COMMAND_TIMEOUT_MS });
}

/**
 * coturn as a STUN-only server in `ns` on every address of `addresses` at `port` and
 * `port + 1` (two addresses of a family enable RFC 5780 for it); its pid file, user db and log
 * go to `dir`. Resolves once every listener is open (bounded: 5 s); the caller stops it.
 */
export async function startCoturn(tools: Record<Tool, string>, ns: string, dir: string, addresses: readonly string[], port: number): Promise<ChildProcess> {
  const tag = `coturn-${port}`;
  const args = [
    'netns', 'exec', ns, tools.turnserver,
    '-n', ...addresses.flatMap((address) => ['-L', address]),
    '--listening-port', String(port), '--alt-listening-port', String(port + 1),
    '--stun-only', '--no-cli', '--no-tls', '--no-dtls', '--no-tcp',
    '--pidfile', join(dir, `${tag}.pid`),
    '--userdb', join(dir, `${tag}.db`),
    '--log-file', join(dir, `${tag}.log`), '--simple-log', '--no-stdout-log',
  ];
  const child = spawn(tools.ip, args, { stdio: 'ignore' });
  const expected = addresses.flatMap((ip) => {
    const host = ip.includes(':') ? `[${ip}]` : ip;
    return [`${host}:${port}`, `${host}:${port + 1}`];
  });
  try {
    for (let attempt = 0; ; attempt++) {
      if (child.exitCode !== null) throw new Error(`coturn exited with code ${child.exitCode} (log in ${dir})`);
      if (attempt >= 100) throw new Error(`coturn did not open ${expected.join(', ')} within 5 s`);
      const { stdout: listening } = await execFileAsync(tools.ip, ['netns', 'exec', ns, tools.ss, '-H', '-u', '-l', '-n'], { timeout: COMMAND_TIMEOUT_MS });
      if (expected.every((endpoint) => listening.includes(`${endpoint} `))) return child;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } catch (err) {
    await stopProcess(child);
    throw err;
  }
}

function registerForExit(lab: NatLab): void {
  liveLabs.add(lab);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const live of liveLabs) live.destroySync();
  });
}

/** SIGTERM, then SIGKILL after 2 s; resolves once the process has exited. */
export function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 2_000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
