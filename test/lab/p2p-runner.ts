/**
 * Plain UDP hole punching over ONE socket, for the two-client lab (test/lab/p2p-lab.ts): the lab
 * starts one of these in each client namespace (`ip netns exec NS node p2p-runner.js '<config>'`)
 * and drives it over stdin/stdout, one JSON object per line:
 *
 *  1. start-up: bind one UDP socket, learn its server-reflexive address from the STUN server
 *     (coturn in the wan) and print `{"event":"ready",...}`;
 *  2. `{"cmd":"prime","targets":[...],"ttl":2}`: one probe per target with a low TTL (it opens
 *     our own NAT's mapping and dies before the peer's NAT), then `{"event":"primed"}`;
 *  3. `{"cmd":"punch","targets":[...],...}`: probes every `intervalMs` to every target; a probe
 *     from an address we did not target is answered there too (peer-reflexive) when
 *     `replyToObserved`; ends `lingerMs` after both directions are proven (we received the
 *     peer's probe, and the peer's probe says it received ours) or after `durationMs`, then
 *     prints `{"event":"punched",...}`;
 *  4. `{"cmd":"exit"}` or the end of stdin: close and exit.
 * Errors print `{"event":"error","message":...}` and exit 1.
 *
 * `node --test dist/test/` also loads every file under test/ as a test file; without a config
 * argument this script therefore does nothing.
 */
import type dgram from 'node:dgram';
import { createInterface } from 'node:readline';
import { type Endpoint, StunClient, formatEndpoint } from '../../core/nat/stun.js';
import { type UdpFamily, closeUdpSocket, openUdpSocket, sourceAddressToward } from '../../core/nat/udp.js';

export interface P2pRunnerConfig {
  /** Names this side in its probes ('A' or 'B'). */
  id: string;
  family: UdpFamily;
  stun: Endpoint;
}

export interface PunchOptions {
  targets: Endpoint[];
  durationMs: number;
  intervalMs: number;
  replyToObserved: boolean;
  /** How long to keep sending once both directions are proven (the peer needs our proof too). */
  lingerMs: number;
}

export type P2pRunnerCommand = { cmd: 'prime'; targets: Endpoint[]; ttl: number } | ({ cmd: 'punch' } & PunchOptions) | { cmd: 'exit' };

export interface ReadyEvent {
  event: 'ready';
  /** The socket's host candidate: the local address toward the STUN server, and its port. */
  host: Endpoint;
  /** What the STUN server saw. */
  reflexive: Endpoint;
}

export interface PrimedEvent {
  event: 'primed';
  sent: number;
}

export interface PunchedEvent {
  event: 'punched';
  /** Every address a peer probe came from, with the count and ms after the punch started. */
  received: { from: string; probes: number; firstMs: number }[];
  /** Addresses whose probes said they had received ours. */
  confirmedBy: string[];
  /** Every address we sent probes to (targets, then peer-reflexive ones). */
  sentTo: string[];
  sent: number;
  durationMs: number;
}

export type P2pRunnerEvent = ReadyEvent | PrimedEvent | PunchedEvent | { event: 'error'; message: string };

/** A probe: JSON with a marker; its first byte '{' is not STUN (top two bits 01). */
interface Probe {
  'wzp-punch': 1;
  id: string;
  seq: number;
  /** The sender has received at least one probe from the address this one goes to. */
  seen: boolean;
}

const DEFAULT_TTL = 64;

function emit(event: P2pRunnerEvent): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function parseProbe(packet: Buffer, ownId: string): Probe | undefined {
  if (packet.length === 0 || packet.length > 512 || packet[0] !== 0x7b) return undefined;
  try {
    const probe = JSON.parse(packet.toString('utf8')) as Partial<Probe>;
    if (probe['wzp-punch'] !== 1 || typeof probe.id !== 'string' || probe.id === ownId || typeof probe.seq !== 'number') return undefined;
    return probe as Probe;
  } catch {
    return undefined;
  }
}

function send(socket: dgram.Socket, probe: Probe, to: Endpoint): Promise<void> {
  return new Promise((resolve) => {
    // A send error (no route, ICMP-induced) is an outcome of the experiment, not a failure.
    socket.send(Buffer.from(JSON.stringify(probe)), to.port, to.address, () => resolve());
  });
}

class Puncher {
  private seq = 0;

  constructor(
    private readonly socket: dgram.Socket,
    private readonly id: string,
  ) {}

  async prime(targets: readonly Endpoint[], ttl: number): Promise<PrimedEvent> {
    this.socket.setTTL(ttl);
    try {
      for (const target of targets) await send(this.socket, { 'wzp-punch': 1, id: this.id, seq: this.seq++, seen: false }, target);
    } finally {
      this.socket.setTTL(DEFAULT_TTL);
    }
    return { event: 'primed', sent: targets.length };
  }

  punch(options: PunchOptions): Promise<PunchedEvent> {
    const started = performance.now();
    const targets = new Map(options.targets.map((t) => [formatEndpoint(t), t]));
    const received = new Map<string, { from: string; probes: number; firstMs: number }>();
    const confirmedBy = new Set<string>();
    let sent = 0;
    return new Promise((resolve) => {
      let lingerUntil: number | undefined;
      const onMessage = (packet: Buffer, rinfo: dgram.RemoteInfo) => {
        const probe = parseProbe(packet, this.id);
        if (!probe) return;
        const from = { address: rinfo.address, port: rinfo.port };
        const key = formatEndpoint(from);
        const entry = received.get(key) ?? { from: key, probes: 0, firstMs: Math.round(performance.now() - started) };
        entry.probes++;
        received.set(key, entry);
        if (probe.seen) confirmedBy.add(key);
        if (options.replyToObserved && !targets.has(key)) targets.set(key, from);
      };
      this.socket.on('message', onMessage);
      const tick = async () => {
        const now = performance.now();
        if (lingerUntil === undefined && received.size > 0 && confirmedBy.size > 0) lingerUntil = now + options.lingerMs;
        if (now - started >= options.durationMs || (lingerUntil !== undefined && now >= lingerUntil)) {
          clearInterval(timer);
          this.socket.off('message', onMessage);
          resolve({
            event: 'punched',
            received: [...received.values()],
            confirmedBy: [...confirmedBy],
            sentTo: [...targets.keys()],
            sent,
            durationMs: Math.round(now - started),
          });
          return;
        }
        for (const [key, target] of targets) {
          sent++;
          await send(this.socket, { 'wzp-punch': 1, id: this.id, seq: this.seq++, seen: received.has(key) }, target);
        }
      };
      const timer = setInterval(() => void tick(), options.intervalMs);
      void tick();
    });
  }
}

async function main(config: P2pRunnerConfig): Promise<void> {
  const socket = await openUdpSocket(config.family);
  try {
    const stun = new StunClient(socket);
    let reflexive: Endpoint;
    try {
      reflexive = (await stun.binding(config.stun, { label: 'reflexive' })).mappedAddress;
    } finally {
      stun.close();
    }
    const host = { address: await sourceAddressToward(socket, config.stun), port: socket.address().port };
    emit({ event: 'ready', host, reflexive });
    const puncher = new Puncher(socket, config.id);
    const lines = createInterface({ input: process.stdin });
    for await (const line of lines) {
      if (line.trim() === '') continue;
      const command = JSON.parse(line) as P2pRunnerCommand;
      if (command.cmd === 'exit') break;
      if (command.cmd === 'prime') emit(await puncher.prime(command.targets, command.ttl));
      else if (command.cmd === 'punch') emit(await puncher.punch(command));
      else throw new Error(`unknown command ${line}`);
    }
    lines.close();
  } catch (err) {
    emit({ event: 'error', message: (err as Error).message });
    process.exitCode = 1;
  } finally {
    await closeUdpSocket(socket);
  }
}

const argument = process.argv[2];
if (argument !== undefined) await main(JSON.parse(argument) as P2pRunnerConfig);
