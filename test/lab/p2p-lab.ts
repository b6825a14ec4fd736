/**
 * The two-client NAT lab for direct (peer-to-peer) calls: network namespaces joined by veth
 * pairs, a NAT router per side (test/lab/netns.ts's nftables NAT modes) and the relay and coturn
 * on the "internet". Nothing touches the host's interfaces, routes or firewall: every veth is
 * created directly inside the lab's own namespaces, and every address (TEST-NET-1/2/3,
 * 10.77.0.0/16, 2001:db8::/32) exists only there. Needs root, `ip`, `nft`, `conntrack`, `ss`,
 * `turnserver` (labAvailable()).
 *
 * two-nat (side A mode X, side B mode Y; 'none' = a public client on the uplink itself):
 * ```
 *  clientA ns            routerA ns                          wan ns ("the internet")
 *  eth0 10.77.1.2 ── lan0 10.77.1.1 │ wan0 192.0.2.2 ──── up-a 192.0.2.1
 *                        NAT mode X                          lo   203.0.113.1, .2 (relay, coturn
 *                                                                 :3478/:3479), 2001:db8:f::1, ::2
 *  clientB ns            routerB ns                          routes between its links
 *  eth0 10.77.2.2 ── lan0 10.77.2.1 │ wan0 198.51.100.2 ── up-b 198.51.100.1
 *                        NAT mode Y
 * ```
 * With `ipv6`, every link also carries 2001:db8:a::/48 (side A) or 2001:db8:b::/48 (side B)
 * addresses, routed without NAT or filtering (uplink 2001:db8:a:1::/64, LAN 2001:db8:a:2::/64),
 * and coturn also listens on the wan's IPv6 addresses.
 *
 * same-nat: one router (mode X) whose LAN is a bridge with both clients on it (10.77.1.2 and
 * 10.77.1.3); no NAT hairpins, so the clients reach each other over host addresses only.
 *
 * The wan namespace routes (it is not a bridge), so a packet with TTL 2 from a client behind a
 * NAT passes its own NAT and dies in the wan: low-TTL priming (FACTS.md) never reaches the
 * peer's NAT. cutDirect() drops, in the wan's forward path, everything between the two sides'
 * public addresses (traffic to the relay and coturn ends in the wan and is untouched); in
 * same-nat it drops, in the router's LAN bridge, everything between the two clients.
 *
 * Names carry a random suffix so parallel runs never collide; destroy() removes everything,
 * and a process 'exit' hook removes what a crashed test left behind.
 */
import { type ChildProcess, type SpawnOptions, execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Endpoint } from '../../core/nat/stun.js';
import { type LabAvailability, type NatMode, type Tool, labAvailable, natRuleset, startCoturn, stopProcess, toolPaths } from './netns.js';
import type { P2pRunnerCommand, P2pRunnerConfig, P2pRunnerEvent, PrimedEvent, PunchOptions, PunchedEvent, ReadyEvent } from './p2p-runner.js';

const execFileAsync = promisify(execFile);

/** A side's NAT: one of the lab's modes, or 'none' (the client is on the internet itself). */
export type SideMode = NatMode | 'none';

export type P2pTopology =
  /** Two NAT routers, one client behind each (or a public client for 'none'). */
  | { kind: 'two-nat'; a: SideMode; b: SideMode; ipv6?: boolean }
  /** One NAT router, both clients on its LAN (no hairpinning). */
  | { kind: 'same-nat'; mode: NatMode };

export type Side = 'a' | 'b';
export type ClientRole = 'clientA' | 'clientB';
export type P2pRole = 'wan' | 'routerA' | 'routerB' | ClientRole;

export const P2P_NET = {
  /** The relay's and coturn's primary address in the wan. */
  relay: '203.0.113.1',
  /** coturn's RFC 5780 alternate address (a relay may use it as --stun-alternate). */
  alternate: '203.0.113.2',
  relay6: '2001:db8:f::1',
  alternate6: '2001:db8:f::2',
  stunPort: 3478,
  sides: {
    a: { uplinkSubnet: '192.0.2.0/24', wanGateway: '192.0.2.1', public: '192.0.2.2', lanSubnet: '10.77.1.0/24', routerLan: '10.77.1.1', client: '10.77.1.2', prefix6: '2001:db8:a' },
    b: { uplinkSubnet: '198.51.100.0/24', wanGateway: '198.51.100.1', public: '198.51.100.2', lanSubnet: '10.77.2.0/24', routerLan: '10.77.2.1', client: '10.77.2.2', prefix6: '2001:db8:b' },
  },
  /** Client B's address in the same-nat topology (on side A's LAN). */
  sameNatClientB: '10.77.1.3',
  prefixLength: 24,
  /** A TTL that passes the client's own NAT router and dies in the wan. */
  primeTtl: 2,
} as const;

/** Interface names inside the namespaces (never in the host's namespace). */
const IF = { up: { a: 'up-a', b: 'up-b' }, routerWan: 'wan0', routerLan: 'lan0', bridge: 'br0', bridgePort: { a: 'lan-a', b: 'lan-b' }, client: 'eth0' } as const;

const COMMAND_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 3_000;
const RUNNER = fileURLToPath(new URL('./p2p-runner.js', import.meta.url));
/** The CLI (bin/run.js) from dist/test/lab/. */
const BIN = fileURLToPath(new URL('../../../bin/run.js', import.meta.url));
const RELAY_START_TIMEOUT_MS = 20_000;
const EXIT_SIGNALS = { SIGINT: 2, SIGTERM: 15 } as const;

/** Whether the lab can run here; tests skip with `reason` when not (same needs as NatLab). */
export function p2pLabAvailable(): Promise<LabAvailability> {
  return labAvailable();
}

/** What the tests need to know about one client. */
export interface LabClient {
  readonly role: ClientRole;
  readonly namespace: string;
  /** The client's IPv4 host address. */
  readonly address: string;
  /** Its global IPv6 address (two-nat with ipv6 only). */
  readonly address6?: string;
  /** The IPv4 address the internet sees it as: its router's WAN address, or its own. */
  readonly publicAddress: string;
  /** Its side's NAT, 'none' for a public client. */
  readonly nat: SideMode;
  /** The TTL for priming (passes its own NAT, dies before the peer's); undefined without a NAT. */
  readonly primeTtl?: number;
}

export interface LabRelay {
  /** What the relay printed: `IP:PORT` it listens on. */
  readonly address: string;
  readonly fingerprint: string;
  readonly child: ChildProcess;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
}

export interface StartRelayOptions {
  /** Default `${P2P_NET.relay}:4433`. */
  listen?: string;
  /** The relay's identity lives here (`--config-dir`). */
  configDir: string;
  /** Environment (e.g. a test home's env). */
  env?: NodeJS.ProcessEnv;
  /** More `wzp relay` flags. */
  args?: readonly string[];
}

export interface P2pLabOptions {
  topology: P2pTopology;
  /** Start coturn in the wan (default true). */
  coturn?: boolean;
  /** Routers' conntrack UDP timeout (unreplied flows), seconds. */
  conntrackUdpTimeoutS?: number;
}

/** What one namespace gets: its interfaces, `ip` commands, sysctls ('?' = optional), routes, nft. */
interface NsPlan {
  ifs: string[];
  ip: string[];
  sysctl: string[];
  routes: string[];
  nft: string[];
}

type Namespaces = Readonly<Record<'wan' | ClientRole, string>> & Readonly<Partial<Record<'routerA' | 'routerB', string>>>;

/**
 * A namespace's first step: `sh -c CONFIGURE_SCRIPT sh IP BATCH [PATH VALUE]...` writes each
 * sysctl (a PATH starting with '?' is skipped when absent) and runs the namespace's `ip -batch`
 * (addresses, bridge ports, links up).
 */
const CONFIGURE_SCRIPT = [
  'ip="$1"; batch="$2"; shift 2',
  'while [ "$#" -gt 0 ]; do',
  '  case "$1" in',
  '    "?"*) f="${1#?}"; if [ -e "$f" ]; then printf "%s\\n" "$2" > "$f" || exit 1; fi ;;',
  '    *) printf "%s\\n" "$2" > "$1" || exit 1 ;;',
  '  esac',
  '  shift 2',
  'done',
  'exec "$ip" -batch "$batch"',
].join('\n');

/**
 * Its second step: `sh -c WIRE_SCRIPT sh IP NFT CONNTRACK ROUTES RULES UDP_TIMEOUT VETH...` waits
 * until every veth is operationally up (carrier on both ends; bounded: ~5 s, read from the
 * namespace's own /sys without a process per poll), then adds the routes, loads the NAT rules,
 * sets the conntrack UDP timeout and empties conntrack (empty arguments skip a step).
 */
const WIRE_SCRIPT = [
  'ip="$1"; nft="$2"; conntrack="$3"; routes="$4"; rules="$5"; timeout="$6"; shift 6',
  'i=0',
  'while :; do',
  '  ok=1',
  '  for d in "$@"; do s=down; read -r s < "/sys/class/net/$d/operstate" || ok=0; [ "$s" = up ] || ok=0; done',
  '  [ "$ok" = 1 ] && break',
  '  i=$((i + 1))',
  '  if [ "$i" -ge 250 ]; then echo "links $* did not come up within 5 s" >&2; exit 1; fi',
  '  sleep 0.02',
  'done',
  'if [ -n "$routes" ]; then "$ip" -batch "$routes" || exit 1; fi',
  'if [ -n "$rules" ]; then "$nft" -f "$rules" || exit 1; fi',
  'if [ -n "$timeout" ]; then printf "%s\\n" "$timeout" > /proc/sys/net/netfilter/nf_conntrack_udp_timeout || exit 1; fi',
  // An empty table exits 0 or 1 depending on the conntrack version.
  'if [ -n "$rules" ]; then "$conntrack" -F > /dev/null 2>&1 || true; fi',
].join('\n');

const liveLabs = new Set<P2pLab>();
let exitHookInstalled = false;

export class P2pLab {
  private readonly children = new Set<ChildProcess>();
  private readonly coturns: ChildProcess[] = [];
  private cut = false;
  private destroyed = false;

  private constructor(
    readonly topology: P2pTopology,
    readonly namespaces: Namespaces,
    readonly clients: Readonly<Record<Side, LabClient>>,
    private readonly tools: Record<Tool, string>,
    private readonly dir: string,
  ) {}

  /** Builds the topology, loads the NAT rules and starts coturn; tears down on any failure. */
  static async create(options: P2pLabOptions): Promise<P2pLab> {
    const tools = toolPaths();
    if ('missing' in tools) throw new Error(`NAT lab tools missing: ${tools.missing.join(', ')}`);
    const { topology } = options;
    const id = randomBytes(3).toString('hex');
    const ns = (suffix: string) => `wzp-${id}-${suffix}`;
    let namespaces: Namespaces;
    let clients: Record<Side, LabClient>;
    if (topology.kind === 'two-nat') {
      const routed = (side: Side) => (topology[side] === 'none' ? undefined : ns(`rt${side}`));
      namespaces = { wan: ns('wan'), routerA: routed('a'), routerB: routed('b'), clientA: ns('cla'), clientB: ns('clb') };
      const client = (side: Side): LabClient => {
        const net = P2P_NET.sides[side];
        const mode = topology[side];
        const role = side === 'a' ? 'clientA' : 'clientB';
        return {
          role,
          namespace: namespaces[role],
          address: mode === 'none' ? net.public : net.client,
          address6: topology.ipv6 ? `${net.prefix6}:${mode === 'none' ? 1 : 2}::2` : undefined,
          publicAddress: net.public,
          nat: mode,
          primeTtl: mode === 'none' ? undefined : P2P_NET.primeTtl,
        };
      };
      clients = { a: client('a'), b: client('b') };
    } else {
      namespaces = { wan: ns('wan'), routerA: ns('rta'), clientA: ns('cla'), clientB: ns('clb') };
      const client = (role: ClientRole, address: string): LabClient => ({
        role,
        namespace: namespaces[role],
        address,
        publicAddress: P2P_NET.sides.a.public,
        nat: topology.mode,
        primeTtl: P2P_NET.primeTtl,
      });
      clients = { a: client('clientA', P2P_NET.sides.a.client), b: client('clientB', P2P_NET.sameNatClientB) };
    }
    const lab = new P2pLab(topology, namespaces, clients, tools, await mkdtemp(join(tmpdir(), `wzp-p2p-lab-${id}-`)));
    registerForExit(lab);
    try {
      await lab.build(options);
      return lab;
    } catch (err) {
      await lab.destroy();
      throw err;
    }
  }

  /** The STUN server in the wan (coturn), for the family of the clients' sockets. */
  stunServer(family: 'udp4' | 'udp6' = 'udp4'): Endpoint {
    return { address: family === 'udp6' ? P2P_NET.relay6 : P2P_NET.relay, port: P2P_NET.stunPort };
  }

  /** The absolute path of one of the lab's tools (PATH may lack /usr/sbin). */
  toolPath(tool: Tool): string {
    return this.tools[tool];
  }

  /** Runs a command to completion inside one of the lab's namespaces; resolves its stdout. */
  async exec(role: P2pRole, command: string, args: readonly string[], timeoutMs = COMMAND_TIMEOUT_MS): Promise<string> {
    const { stdout } = await execFileAsync(this.tools.ip, ['netns', 'exec', this.ns(role), command, ...args], { timeout: timeoutMs });
    return stdout;
  }

  /**
   * Starts a long-running process in one of the lab's namespaces (e.g. the relay in 'wan':
   * `lab.spawnIn('wan', process.execPath, [BIN, 'relay', '--listen', `${P2P_NET.relay}:4433`, ...])`).
   * destroy() stops it (SIGTERM, then SIGKILL) before the namespaces go.
   */
  spawnIn(role: P2pRole, command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
    if (this.destroyed) throw new Error('the lab is destroyed');
    const child = spawn(this.tools.ip, ['netns', 'exec', this.ns(role), command, ...args], options);
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /**
   * `wzp relay --listen LISTEN --config-dir DIR ...args` in the wan namespace (spawnIn: stopped
   * by destroy()); resolves on its "listening on ADDRESS fingerprint FP" line (bounded: 20 s).
   */
  startRelay(options: StartRelayOptions): Promise<LabRelay> {
    const listen = options.listen ?? `${P2P_NET.relay}:4433`;
    const args = [BIN, 'relay', '--listen', listen, '--config-dir', options.configDir, ...(options.args ?? [])];
    const child = this.spawnIn('wan', process.execPath, args, { env: options.env ?? process.env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`relay did not start within ${RELAY_START_TIMEOUT_MS} ms\n${stderr}`));
      }, RELAY_START_TIMEOUT_MS);
      child.stderr?.on('data', (d) => {
        stderr += d;
        const m = /listening on (\S+) fingerprint (\S+)/.exec(stderr);
        if (m) {
          clearTimeout(timer);
          resolve({ address: m[1], fingerprint: m[2], child, stderr: () => stderr });
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`relay exited (${code ?? signal}) before listening\n${stderr}`));
      });
    });
  }

  /** Empties the conntrack tables of the routers (all NAT state; learned full-cone maps stay). */
  async flushConntrack(): Promise<void> {
    for (const role of ['routerA', 'routerB'] as const) {
      // An empty table exits 0 or 1 depending on the conntrack version.
      if (this.namespaces[role]) await this.exec(role, this.tools.conntrack, ['-F']).catch(() => undefined);
    }
  }

  /**
   * Drops every packet between the two clients' public addresses (their NAT mappings, any
   * port; IPv6 addresses too), leaving their traffic with the relay untouched. In same-nat:
   * every packet between the two clients on the LAN. Idempotent.
   */
  async cutDirect(): Promise<void> {
    if (this.cut) return;
    const a = this.clients.a;
    const b = this.clients.b;
    const pair = (family: 'ip' | 'ip6', x: string, y: string) => [`${family} saddr ${x} ${family} daddr ${y} drop`, `${family} saddr ${y} ${family} daddr ${x} drop`];
    let table: string;
    let role: P2pRole;
    if (this.topology.kind === 'same-nat') {
      role = 'routerA';
      table = `table bridge wzp_cut {\n  chain forward { type filter hook forward priority 0; policy accept; ${pair('ip', a.address, b.address).join('; ')}; }\n}\n`;
    } else {
      role = 'wan';
      const rules = pair('ip', a.publicAddress, b.publicAddress);
      if (a.address6 && b.address6) rules.push(...pair('ip6', a.address6, b.address6));
      table = `table inet wzp_cut {\n  chain forward { type filter hook forward priority 0; policy accept; ${rules.join('; ')}; }\n}\n`;
    }
    const file = join(this.dir, 'cut.nft');
    await writeFile(file, table);
    await this.exec(role, this.tools.nft, ['-f', file]);
    this.cut = true;
  }

  /** Removes cutDirect()'s rule. Idempotent. */
  async restoreDirect(): Promise<void> {
    if (!this.cut) return;
    const family = this.topology.kind === 'same-nat' ? 'bridge' : 'inet';
    await this.exec(this.topology.kind === 'same-nat' ? 'routerA' : 'wan', this.tools.nft, ['delete', 'table', family, 'wzp_cut']);
    this.cut = false;
  }

  /** Whether cutDirect() is in force. */
  get directCut(): boolean {
    return this.cut;
  }

  /** Starts test/lab/p2p-runner.js in a client namespace; resolves once it has its reflexive address. */
  async startPuncher(client: Side, family: 'udp4' | 'udp6' = 'udp4'): Promise<PunchRunner> {
    const config: P2pRunnerConfig = { id: client.toUpperCase(), family, stun: this.stunServer(family) };
    const child = this.spawnIn(this.clients[client].role, process.execPath, [RUNNER, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'pipe'] });
    const runner = new PunchRunner(child, `${client.toUpperCase()} (${this.clients[client].nat})`);
    try {
      await runner.ready();
      return runner;
    } catch (err) {
      await runner.close();
      throw err;
    }
  }

  /** Stops every process, deletes the namespaces and the temp dir. Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    liveLabs.delete(this);
    await Promise.all([...this.children, ...this.coturns].map((child) => stopProcess(child)));
    await Promise.all(
      Object.values(this.namespaces).map((ns) => (ns ? execFileAsync(this.tools.ip, ['netns', 'del', ns], { timeout: COMMAND_TIMEOUT_MS }).catch(() => undefined) : undefined)),
    );
    await rm(this.dir, { recursive: true, force: true });
  }

  /** Synchronous last-resort cleanup for process exit. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const child of [...this.children, ...this.coturns]) child.kill('SIGKILL');
    for (const ns of Object.values(this.namespaces)) {
      if (!ns) continue;
      try {
        execFileSync(this.tools.ip, ['netns', 'del', ns], { stdio: 'ignore', timeout: COMMAND_TIMEOUT_MS });
      } catch {
        // already gone
      }
    }
  }

  private ns(role: P2pRole): string {
    const name = this.namespaces[role];
    if (!name) throw new Error(`this lab (${this.topology.kind}) has no ${role} namespace`);
    return name;
  }

  /**
   * Few processes (each `ip` costs ~50 ms on a loaded 2-core machine): one `ip -batch` in the
   * host's namespace creates the namespaces and the veth pairs (each end directly in its
   * namespace), then one shell per namespace writes its sysctls and runs its own `ip -batch`;
   * routes and NAT rules once the links have carrier.
   */
  private async build(options: P2pLabOptions): Promise<void> {
    const { topology } = this;
    const ipv6 = topology.kind === 'two-nat' && topology.ipv6 === true;
    const plans = new Map<string, NsPlan>();
    for (const ns of Object.values(this.namespaces)) if (ns) plans.set(ns, { ifs: ['lo'], ip: [], routes: [], sysctl: [], nft: [] });
    const plan = (ns: string) => plans.get(ns) as NsPlan;
    const host: string[] = [...plans.keys()].map((ns) => `netns add ${ns}`);
    const veth = (nsA: string, ifA: string, nsB: string, ifB: string) => {
      host.push(`link add ${ifA} netns ${nsA} type veth peer name ${ifB} netns ${nsB}`);
      plan(nsA).ifs.push(ifA);
      plan(nsB).ifs.push(ifB);
    };
    const address = (ns: string, ifname: string, cidr: string) =>
      // nodad: IPv6 addresses usable at once (no duplicate address detection delay).
      plan(ns).ip.push(`addr add ${cidr} dev ${ifname}${cidr.includes(':') ? ' nodad' : ''}`);
    // The gateway's family picks the table (`ip -batch` takes no -4/-6 per line).
    const route = (ns: string, destination: string, via: string) => plan(ns).routes.push(`route add ${destination} via ${via}`);

    const { wan } = this.namespaces;
    for (const server of [P2P_NET.relay, P2P_NET.alternate]) address(wan, 'lo', `${server}/32`);
    if (ipv6) for (const server of [P2P_NET.relay6, P2P_NET.alternate6]) address(wan, 'lo', `${server}/128`);
    for (const ns of [wan, this.namespaces.routerA, this.namespaces.routerB]) {
      if (ns) plan(ns).sysctl.push('net.ipv4.ip_forward=1', ...(ipv6 ? ['net.ipv6.conf.all.forwarding=1'] : []));
    }

    if (topology.kind === 'two-nat') {
      for (const side of ['a', 'b'] as const) {
        const net = P2P_NET.sides[side];
        const mode = topology[side];
        const client = this.clients[side].namespace;
        const router = side === 'a' ? this.namespaces.routerA : this.namespaces.routerB;
        const uplinkPeer = router ?? client;
        const uplinkIf = router ? IF.routerWan : IF.client;
        veth(wan, IF.up[side], uplinkPeer, uplinkIf);
        address(wan, IF.up[side], `${net.wanGateway}/${P2P_NET.prefixLength}`);
        address(uplinkPeer, uplinkIf, `${net.public}/${P2P_NET.prefixLength}`);
        route(uplinkPeer, 'default', net.wanGateway);
        if (ipv6) {
          address(wan, IF.up[side], `${net.prefix6}:1::1/64`);
          address(uplinkPeer, uplinkIf, `${net.prefix6}:1::2/64`);
          route(uplinkPeer, 'default', `${net.prefix6}:1::1`);
        }
        if (router && mode !== 'none') {
          veth(router, IF.routerLan, client, IF.client);
          address(router, IF.routerLan, `${net.routerLan}/${P2P_NET.prefixLength}`);
          address(client, IF.client, `${net.client}/${P2P_NET.prefixLength}`);
          route(client, 'default', net.routerLan);
          if (ipv6) {
            address(router, IF.routerLan, `${net.prefix6}:2::1/64`);
            address(client, IF.client, `${net.prefix6}:2::2/64`);
            route(client, 'default', `${net.prefix6}:2::1`);
            route(wan, `${net.prefix6}:2::/64`, `${net.prefix6}:1::2`);
          }
          plan(router).nft.push(this.natRules(side, mode));
        }
      }
    } else {
      const net = P2P_NET.sides.a;
      const router = this.ns('routerA');
      veth(wan, IF.up.a, router, IF.routerWan);
      address(wan, IF.up.a, `${net.wanGateway}/${P2P_NET.prefixLength}`);
      address(router, IF.routerWan, `${net.public}/${P2P_NET.prefixLength}`);
      route(router, 'default', net.wanGateway);
      // The LAN is a bridge in the router with both clients on it. If br_netfilter is loaded
      // (the host's choice), bridged frames would also walk the IP hooks: keep it a plain switch.
      host.push(`link add ${IF.bridge} netns ${router} type bridge`);
      plan(router).ifs.push(IF.bridge);
      plan(router).sysctl.push('?net.bridge.bridge-nf-call-iptables=0');
      address(router, IF.bridge, `${net.routerLan}/${P2P_NET.prefixLength}`);
      for (const [port, client, clientAddress] of [
        [IF.bridgePort.a, this.namespaces.clientA, net.client],
        [IF.bridgePort.b, this.namespaces.clientB, P2P_NET.sameNatClientB],
      ] as const) {
        veth(router, port, client, IF.client);
        plan(router).ip.push(`link set ${port} master ${IF.bridge}`);
        address(client, IF.client, `${clientAddress}/${P2P_NET.prefixLength}`);
        route(client, 'default', net.routerLan);
      }
      plan(router).nft.push(this.natRules('a', topology.mode));
    }

    await this.batch(undefined, host);
    await Promise.all(
      [...plans].map(async ([ns, p]) => {
        // rp_filter off on 'all', 'default' and every interface (the kernel takes the larger of 'all' and the interface's).
        const sysctls = [...['all', 'default', ...p.ifs].map((name) => `net.ipv4.conf.${name}.rp_filter=0`), ...p.sysctl].flatMap((setting) => {
          const [key, value] = setting.split('=');
          return [`${key.startsWith('?') ? '?' : ''}/proc/sys/${key.replace(/^\?/, '').replaceAll('.', '/')}`, value];
        });
        const batch = await this.batchFile(ns, [...p.ip, ...p.ifs.map((name) => `link set ${name} up`)]);
        await this.sh(ns, CONFIGURE_SCRIPT, [this.tools.ip, batch, ...sysctls]);
      }),
    );
    const coturn =
      options.coturn ?? true
        ? startCoturn(this.tools, wan, this.dir, [P2P_NET.relay, P2P_NET.alternate, ...(ipv6 ? [P2P_NET.relay6, P2P_NET.alternate6] : [])], P2P_NET.stunPort)
        : undefined;
    const wired = Promise.all(
      [...plans].map(async ([ns, p]) => {
        const routes = p.routes.length > 0 ? await this.batchFile(ns, p.routes) : '';
        const rules = p.nft.length > 0 ? join(this.dir, `nat-${ns}.nft`) : '';
        if (rules) await writeFile(rules, p.nft.join(''));
        const veths = p.ifs.filter((name) => name !== 'lo' && name !== IF.bridge);
        const timeout = rules && options.conntrackUdpTimeoutS !== undefined ? String(options.conntrackUdpTimeoutS) : '';
        await this.sh(ns, WIRE_SCRIPT, [this.tools.ip, this.tools.nft, this.tools.conntrack, routes, rules, timeout, ...veths]);
      }),
    );
    const [, started] = await Promise.allSettled([wired, coturn]);
    if (started.status === 'fulfilled' && started.value) this.coturns.push(started.value);
    await wired;
    if (started.status === 'rejected') throw started.reason;
  }

  /** The side's NAT ruleset; address-restricted filters unsolicited packets before conntrack (see natRuleset). */
  private natRules(side: Side, mode: NatMode): string {
    const net = P2P_NET.sides[side];
    return natRuleset(mode, { wanIf: IF.routerWan, wanAddress: net.public, lanSubnet: net.lanSubnet, filterBeforeConntrack: true });
  }

  /** `ip [-n NS] -batch FILE`: one process for many commands. */
  private async batch(ns: string | undefined, lines: readonly string[]): Promise<void> {
    await execFileAsync(this.tools.ip, [...(ns ? ['-n', ns] : []), '-batch', await this.batchFile(ns, lines)], { timeout: COMMAND_TIMEOUT_MS });
  }

  private async batchFile(ns: string | undefined, lines: readonly string[]): Promise<string> {
    const file = join(this.dir, `ip-${ns ?? 'host'}-${randomBytes(3).toString('hex')}.batch`);
    await writeFile(file, `${lines.join('\n')}\n`);
    return file;
  }

  /** `sh -c SCRIPT sh ...args` inside a namespace. */
  private async sh(ns: string, script: string, args: readonly string[]): Promise<void> {
    await execFileAsync(this.tools.ip, ['netns', 'exec', ns, this.tools.sh, '-c', script, 'sh', ...args], { timeout: COMMAND_TIMEOUT_MS });
  }
}
/** One p2p-runner process: its socket's addresses, and prime/punch commands. */
export class PunchRunner {
  private readonly events: P2pRunnerEvent[] = [];
  private waiter: (() => void) | undefined;
  private stderr = '';
  private exited = false;
  private readyEvent: ReadyEvent | undefined;

  constructor(
    private readonly child: ChildProcess,
    readonly label: string,
  ) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line) as P2pRunnerEvent);
      } catch {
        this.stderr += `(stdout) ${line}\n`;
      }
      this.waiter?.();
    });
    child.stderr!.on('data', (d) => (this.stderr += d));
    child.once('exit', () => {
      this.exited = true;
      this.waiter?.();
    });
  }

  /** The host and server-reflexive addresses of the runner's one socket. */
  get addresses(): ReadyEvent {
    if (!this.readyEvent) throw new Error(`${this.label}: not ready`);
    return this.readyEvent;
  }

  async ready(timeoutMs = 10_000): Promise<ReadyEvent> {
    this.readyEvent = await this.next<ReadyEvent>('ready', timeoutMs);
    return this.readyEvent;
  }

  /** One probe per target with TTL `ttl`; resolves once they are sent. */
  async prime(targets: readonly Endpoint[], ttl: number): Promise<PrimedEvent> {
    this.command({ cmd: 'prime', targets: [...targets], ttl });
    return this.next<PrimedEvent>('primed', 5_000);
  }

  async punch(options: PunchOptions): Promise<PunchedEvent> {
    this.command({ cmd: 'punch', ...options });
    return this.next<PunchedEvent>('punched', options.durationMs + 5_000);
  }

  /** Asks the runner to exit; kills it if it has not within 3 s. */
  async close(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    if (this.child.stdin?.writable) this.child.stdin.end(`${JSON.stringify({ cmd: 'exit' } satisfies P2pRunnerCommand)}\n`);
    const force = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await gone;
    clearTimeout(force);
  }

  private command(command: P2pRunnerCommand): void {
    if (this.exited || !this.child.stdin?.writable) throw new Error(`${this.label}: runner has exited\n${this.stderr}`);
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
  }

  private async next<E extends P2pRunnerEvent>(type: E['event'], timeoutMs: number): Promise<E> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const event = this.events.shift();
      if (event?.event === 'error') throw new Error(`${this.label}: ${event.message}`);
      if (event?.event === type) return event as E;
      if (event) throw new Error(`${this.label}: expected ${type}, got ${JSON.stringify(event)}`);
      if (this.exited) throw new Error(`${this.label}: runner exited before '${type}'\n${this.stderr}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`${this.label}: no '${type}' within ${timeoutMs} ms\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = undefined;
    }
  }
}

export interface PunchPairOptions {
  /** Which of the peer's addresses each side probes (default 'reflexive'). */
  target?: 'reflexive' | 'host';
  family?: 'udp4' | 'udp6';
  /** Both NATed sides send one low-TTL probe to the peer's target, and both finish, before either punches. */
  prime?: boolean;
  /** Start B's punching this long after A's (default 0: both at once). */
  staggerMs?: number;
  /** Answer probes from addresses not targeted (peer-reflexive; default true). */
  replyToObserved?: boolean;
  durationMs?: number;
  intervalMs?: number;
}

export interface PunchPairResult {
  a: ReadyEvent & { punched: PunchedEvent };
  b: ReadyEvent & { punched: PunchedEvent };
  /** A's probes reached B (B received from A) and the reverse. */
  aToB: boolean;
  bToA: boolean;
}

/**
 * Plain UDP hole punching between the lab's two clients, one socket each: each learns its
 * reflexive address from coturn, the test hands each the other's, then both probe.
 */
export async function punchPair(lab: P2pLab, options: PunchPairOptions = {}): Promise<PunchPairResult> {
  const family = options.family ?? 'udp4';
  const runners = await Promise.all([lab.startPuncher('a', family), lab.startPuncher('b', family)]);
  try {
    return await punchBetween(lab, runners[0], runners[1], options);
  } finally {
    await Promise.all(runners.map((r) => r.close()));
  }
}

/**
 * One punching round between two running runners (A's in client A, B's in client B), on their
 * existing sockets and NAT state (e.g. before and after cutDirect()). `family` is the runners'.
 */
export async function punchBetween(lab: P2pLab, a: PunchRunner, b: PunchRunner, options: Omit<PunchPairOptions, 'family'> = {}): Promise<PunchPairResult> {
  const target = (r: PunchRunner) => (options.target === 'host' ? r.addresses.host : r.addresses.reflexive);
  if (options.prime) {
    await Promise.all(
      (
        [
          [a, lab.clients.a, b],
          [b, lab.clients.b, a],
        ] as const
      ).map(([runner, client, peer]) => (client.primeTtl === undefined ? undefined : runner.prime([target(peer)], client.primeTtl))),
    );
  }
  const punch = (peer: PunchRunner): PunchOptions => ({
    targets: [target(peer)],
    durationMs: options.durationMs ?? 1_000,
    intervalMs: options.intervalMs ?? 20,
    replyToObserved: options.replyToObserved ?? true,
    lingerMs: 200,
  });
  const punchedA = a.punch(punch(b));
  if (options.staggerMs) await new Promise((resolve) => setTimeout(resolve, options.staggerMs));
  const [pa, pb] = await Promise.all([punchedA, b.punch(punch(a))]);
  return { a: { ...a.addresses, punched: pa }, b: { ...b.addresses, punched: pb }, aToB: pb.received.length > 0, bToA: pa.received.length > 0 };
}

function registerForExit(lab: P2pLab): void {
  liveLabs.add(lab);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const live of liveLabs) live.destroySync();
  });
  // A signal ends the process without 'exit' handlers: exit explicitly so that the hook runs.
  for (const [signal, number] of Object.entries(EXIT_SIGNALS)) process.once(signal, () => process.exit(128 + number));
}
