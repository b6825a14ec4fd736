/**
 * A three-namespace lab for port mapping: client — router — wan.
 *
 * ```
 *  client ns               router ns                               wan ns
 *  eth0 10.201.0.2/24 ──── lan0 10.201.0.1/24 │ wan0 203.0.113.1/24 ──── eth0 203.0.113.2/24
 *  default via .1          nft: masquerade LAN → wan0,                   eth0 203.0.113.3/24
 *                          forward policy drop + miniupnpd chains        coturn STUN on .2 and .3
 *                          miniupnpd: UPnP-IGD (v1 or v2), NAT-PMP, PCP
 * ```
 * The veth pairs are created inside the namespaces and never touch a real interface; the
 * addresses are 10/8 and TEST-NET-3, used only inside these namespaces. Names carry a random
 * suffix. miniupnpd insists on a STUN check for a reserved WAN address (else NAT-PMP answers
 * "network failure"), hence coturn in the wan namespace, with two addresses so that it
 * answers RFC 5780 change requests and miniupnpd sees an unfiltered 1:1 uplink.
 *
 * Minimal on purpose: test/lab/netns.ts is the general namespace framework; merge later.
 */

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { AddMappingRequest, PortMapEvent, PortMapperOptions, PortMapping } from '../../core/nat/portmap.js';

export const LAB = {
  lanPrefix: '10.201.0.0/24',
  clientLan: '10.201.0.2',
  routerLan: '10.201.0.1',
  routerWan: '203.0.113.1',
  stunPrimary: '203.0.113.2',
  stunSecondary: '203.0.113.3',
  miniupnpdHttpPort: 5000,
} as const;

const REQUIRED_TOOLS = ['ip', 'nft', 'ss', 'miniupnpd', 'turnserver'] as const;
/** miniupnpd's nft backend defaults: table inet "filter" holding these chains. */
const MINIUPNPD_TABLE = 'filter';
const MINIUPNPD_CHAINS = ['miniupnpd', 'prerouting_miniupnpd', 'postrouting_miniupnpd'] as const;
const READY_POLL_MS = 100;
const READY_POLLS = 100;
const STOP_WAIT_MS = 3000;
const MAX_LOG_CHARS = 64 * 1024;
const EXIT_SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/** Why the lab cannot run here, or undefined if it can. */
export function portmapLabSkipReason(): string | undefined {
  if (process.platform !== 'linux') return 'the namespace lab needs Linux';
  if (process.getuid?.() !== 0) return 'the namespace lab needs root (ip netns, nft, miniupnpd)';
  const missing = REQUIRED_TOOLS.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
  return missing.length > 0 ? `missing tools: ${missing.join(', ')} (Debian: iproute2 nftables miniupnpd coturn)` : undefined;
}

export type LabNamespace = 'client' | 'router' | 'wan';

export interface SpawnOptions {
  /** The caller reads stdout (a protocol channel): do not copy it into logs(). */
  stdoutIsData?: boolean;
}

export interface PortmapLab {
  readonly namespaces: Readonly<Record<LabNamespace, string>>;
  /** Starts miniupnpd on the router; `igdV1` selects the IGDv1 description. */
  startMiniupnpd(options: { igdV1: boolean }): Promise<void>;
  /** Stops miniupnpd and empties its nft chains. */
  stopMiniupnpd(): Promise<void>;
  /** The rules miniupnpd currently has in its nft chains (DNAT and filter), as nft text. */
  miniupnpdRules(): string[];
  /** Starts a long-lived process in a namespace; it is killed by destroy(). */
  spawnIn(namespace: LabNamespace, command: string, args: string[], options?: SpawnOptions): ChildProcess;
  /** Output of the daemons so far, for failure messages. */
  logs(): string;
  /** Kills everything started here and deletes the namespaces. Safe to call twice. */
  destroy(): Promise<void>;
}

/** Builds the topology and starts the STUN server. Tears down what it built if it fails. */
export async function createPortmapLab(): Promise<PortmapLab> {
  const lab = new Lab();
  try {
    lab.cleanUpOnExit();
    lab.build();
    await lab.startStun();
    return lab;
  } catch (error) {
    await lab.destroy();
    throw error;
  }
}

class Lab implements PortmapLab {
  readonly namespaces: Record<LabNamespace, string>;
  readonly #workDir = mkdtempSync(join(tmpdir(), 'wzp-portmap-lab-'));
  readonly #children = new Set<ChildProcess>();
  readonly #created: string[] = [];
  #miniupnpd: ChildProcess | undefined;
  #log = '';

  constructor() {
    const suffix = randomBytes(3).toString('hex');
    this.namespaces = { client: `wzp-pm-c-${suffix}`, router: `wzp-pm-r-${suffix}`, wan: `wzp-pm-w-${suffix}` };
  }

  /**
   * If the process exits or is interrupted before destroy(), kill what we started and
   * delete the namespaces synchronously (an 'exit' handler cannot wait).
   */
  cleanUpOnExit(): void {
    process.once('exit', this.#destroySync);
    for (const signal of EXIT_SIGNALS) process.once(signal, this.#exitOnSignal);
  }

  readonly #exitOnSignal = (signal: NodeJS.Signals): void => {
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
  };

  readonly #destroySync = (): void => {
    for (const child of this.#children) child.kill('SIGKILL');
    this.#deleteNamespaces();
    rmSync(this.#workDir, { recursive: true, force: true });
  };

  build(): void {
    const { client, router, wan } = this.namespaces;
    for (const ns of [client, router, wan]) {
      run('ip', ['netns', 'add', ns]);
      this.#created.push(ns);
      run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    run('ip', ['-n', router, 'link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', client]);
    run('ip', ['-n', router, 'link', 'add', 'wan0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', wan]);
    this.#address(router, 'lan0', `${LAB.routerLan}/24`);
    this.#address(router, 'wan0', `${LAB.routerWan}/24`);
    this.#address(client, 'eth0', `${LAB.clientLan}/24`);
    this.#address(wan, 'eth0', `${LAB.stunPrimary}/24`, `${LAB.stunSecondary}/24`);
    run('ip', ['-n', client, 'route', 'add', 'default', 'via', LAB.routerLan]);
    this.#exec('router', 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);
    this.#exec('router', 'nft', ['-f', this.#writeFile('router.nft', routerRuleset())]);
  }

  async startStun(): Promise<void> {
    const args = ['-n', '-L', LAB.stunPrimary, '-L', LAB.stunSecondary, '--stun-only', '--no-cli', '--no-tls', '--no-dtls'];
    args.push('--log-file', 'stdout', '--userdb', join(this.#workDir, 'turndb'), '--pidfile', join(this.#workDir, 'turn.pid'));
    this.spawnIn('wan', 'turnserver', args);
    await this.#waitFor('wan', 'coturn STUN on UDP 3478', () => this.#listening('wan', 'u', 3478));
  }

  async startMiniupnpd(options: { igdV1: boolean }): Promise<void> {
    if (this.#miniupnpd) throw new Error('miniupnpd is already running');
    const conf = this.#writeFile(`miniupnpd-${options.igdV1 ? 'v1' : 'v2'}.conf`, miniupnpdConf(options.igdV1));
    this.#miniupnpd = this.spawnIn('router', 'miniupnpd', ['-d', '-f', conf, '-P', join(this.#workDir, 'miniupnpd.pid')]);
    // It binds NAT-PMP/PCP and HTTP only after its STUN check of the uplink.
    await this.#waitFor('router', 'miniupnpd on UDP 5351 and HTTP', () =>
      this.#listening('router', 'u', 5351) && this.#listening('router', 't', LAB.miniupnpdHttpPort),
    );
  }

  async stopMiniupnpd(): Promise<void> {
    const daemon = this.#miniupnpd;
    this.#miniupnpd = undefined;
    if (daemon) await stopProcess(daemon);
    for (const chain of MINIUPNPD_CHAINS) this.#exec('router', 'nft', ['flush', 'chain', 'inet', MINIUPNPD_TABLE, chain]);
  }

  miniupnpdRules(): string[] {
    return MINIUPNPD_CHAINS.flatMap((chain) => {
      const listing = this.#exec('router', 'nft', ['-j', 'list', 'chain', 'inet', MINIUPNPD_TABLE, chain]);
      const items = (JSON.parse(listing) as { nftables: Record<string, unknown>[] }).nftables;
      return items.filter((item) => 'rule' in item).map((item) => `${chain}: ${JSON.stringify(item.rule)}`);
    });
  }

  spawnIn(namespace: LabNamespace, command: string, args: string[], options: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.namespaces[namespace], command, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
    const record = (chunk: Buffer): void => {
      this.#log = (this.#log + `[${namespace} ${command}] ${chunk.toString()}`).slice(-MAX_LOG_CHARS);
    };
    child.stderr?.on('data', record);
    if (!options.stdoutIsData) child.stdout?.on('data', record);
    return child;
  }

  logs(): string {
    return this.#log;
  }

  async destroy(): Promise<void> {
    process.off('exit', this.#destroySync);
    for (const signal of EXIT_SIGNALS) process.off(signal, this.#exitOnSignal);
    await Promise.all([...this.#children].map(stopProcess));
    this.#miniupnpd = undefined;
    this.#deleteNamespaces();
    rmSync(this.#workDir, { recursive: true, force: true });
  }

  #deleteNamespaces(): void {
    for (const ns of this.#created.splice(0)) {
      // Anything still inside our namespaces was started by this lab (daemons' children).
      for (const pid of runQuietly('ip', ['netns', 'pids', ns]).split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already gone
        }
      }
      runQuietly('ip', ['netns', 'del', ns]);
    }
  }

  #address(ns: string, device: string, ...addresses: string[]): void {
    for (const address of addresses) run('ip', ['-n', ns, 'addr', 'add', address, 'dev', device]);
    run('ip', ['-n', ns, 'link', 'set', device, 'up']);
  }

  #exec(namespace: LabNamespace, command: string, args: string[]): string {
    return run('ip', ['netns', 'exec', this.namespaces[namespace], command, ...args]);
  }

  #listening(namespace: LabNamespace, kind: 'u' | 't', port: number): boolean {
    const flags = kind === 'u' ? '-Hlnu' : '-Hlnt';
    return this.#exec(namespace, 'ss', [flags, `sport = :${port}`]).trim() !== '';
  }

  async #waitFor(namespace: LabNamespace, what: string, ready: () => boolean): Promise<void> {
    for (let poll = 0; poll < READY_POLLS; poll++) {
      if (ready()) return;
      await delay(READY_POLL_MS);
    }
    throw new Error(`${what} not ready in ${namespace} after ${READY_POLLS * READY_POLL_MS} ms\n${this.#log}`);
  }

  #writeFile(name: string, text: string): string {
    const path = join(this.#workDir, name);
    writeFileSync(path, text);
    return path;
  }
}

/**
 * The router's nftables: LAN → WAN masquerade, a forward policy of drop (only LAN-out,
 * replies, and what miniupnpd opens pass), and the chains miniupnpd's nft backend fills.
 */
function routerRuleset(): string {
  return `
table inet ${MINIUPNPD_TABLE} {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "lan0" oifname "wan0" accept
    jump miniupnpd
  }
  chain miniupnpd {
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
    ip saddr ${LAB.lanPrefix} oifname "wan0" masquerade
  }
  chain prerouting_miniupnpd {
  }
  chain postrouting_miniupnpd {
  }
}
`;
}

function miniupnpdConf(igdV1: boolean): string {
  return `ext_ifname=wan0
listening_ip=lan0
http_port=${LAB.miniupnpdHttpPort}
enable_upnp=yes
enable_natpmp=yes
secure_mode=yes
ext_perform_stun=yes
ext_stun_host=${LAB.stunPrimary}
uuid=5b54fbd1-53ba-46d3-b12d-${randomBytes(6).toString('hex')}
force_igd_desc_v1=${igdV1 ? 'yes' : 'no'}
allow 1024-65535 ${LAB.lanPrefix} 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`;
}

function run(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${result.status ?? result.signal}): ${result.stderr || result.error}`);
  }
  return result.stdout;
}

function runQuietly(command: string, args: string[]): string {
  return spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 }).stdout ?? '';
}

/** SIGTERM, then SIGKILL if it has not exited within STOP_WAIT_MS. */
async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_WAIT_MS);
  await exited;
  clearTimeout(timer);
}

// ---------------------------------------------------------------------------------------
// Runners: portmap-runner.js inside a namespace, driven over stdin/stdout JSON lines

/** PortMapperOptions without the callback (set by the runner). */
export type MapperOptions = Omit<PortMapperOptions, 'onProgress'>;

export type RunnerRequest =
  | { op: 'listen'; port: number }
  | { op: 'await-payload'; port: number; payload: string; timeoutMs: number }
  | { op: 'send'; host: string; port: number; payload: string; count: number; intervalMs: number }
  | { op: 'probe'; mapper: MapperOptions }
  | { op: 'add'; mapper: MapperOptions; request: AddMappingRequest }
  | { op: 'delete'; mapper: MapperOptions; mapping: PortMapping }
  | { op: 'list'; mapper: MapperOptions }
  | { op: 'keep-start'; mapper: MapperOptions; mapping: PortMapping; key: string }
  | { op: 'keep-stop'; key: string };

export interface RunnerError {
  name: string;
  message: string;
  reason?: string;
}

/** A PortMapEvent as JSON (a failed attempt's error reduced to name and message). */
export type RunnerEvent = Exclude<PortMapEvent, { type: 'portmap:failed' }> | (Omit<Extract<PortMapEvent, { type: 'portmap:failed' }>, 'error'> & { error: RunnerError });

export type RunnerResponse =
  | { id: number; ok: true; result: unknown; events: RunnerEvent[] }
  | { id: number; ok: false; error: RunnerError; events: RunnerEvent[] };

export interface RunnerReply<T> {
  result: T;
  events: RunnerEvent[];
}

const RUNNER_CALL_TIMEOUT_MS = 30_000;
/** portmap-runner.js serves requests only when started with this argument. */
export const RUNNER_SERVE_ARG = 'serve';

/** A portmap-runner process in one namespace. */
export class LabRunner {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, (response: RunnerResponse) => void>();
  #nextId = 1;

  constructor(lab: PortmapLab, namespace: LabNamespace) {
    const script = fileURLToPath(new URL('./portmap-runner.js', import.meta.url));
    this.#child = lab.spawnIn(namespace, process.execPath, [script, RUNNER_SERVE_ARG], { stdoutIsData: true });
    createInterface({ input: this.#child.stdout! }).on('line', (line) => {
      const response = JSON.parse(line) as RunnerResponse;
      this.#pending.get(response.id)?.(response);
      this.#pending.delete(response.id);
    });
  }

  /** Sends a request; resolves with its result and events, rejects with its error. */
  call<T = unknown>(request: RunnerRequest): Promise<RunnerReply<T>> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`runner: no answer to ${request.op} within ${RUNNER_CALL_TIMEOUT_MS} ms`));
      }, RUNNER_CALL_TIMEOUT_MS);
      this.#pending.set(id, (response) => {
        clearTimeout(timer);
        if (response.ok) resolve({ result: response.result as T, events: response.events });
        else reject(Object.assign(new Error(`${response.error.name}: ${response.error.message}`), { remote: response.error }));
      });
      this.#child.stdin!.write(`${JSON.stringify({ ...request, id })}\n`);
    });
  }
}
