import { installedStrategies } from '../../core/p2p/hard-nat.js';
import { Flags } from '@oclif/core';
import { Listr, ListrLogger, ProcessOutput } from 'listr2';
import { type CheckStatus, type NetcheckCheckId, type NetcheckEvent, describeAllocation } from '../../core/nat/netcheck.js';
import { WzpCommand } from '../base-command.js';
import { netcheck, type NetcheckReport } from '../services/netcheck.js';
import { secondsFlag, timeoutMs } from '../connect-flags.js';

const FAMILY_LABEL = { ipv4: 'IPv4', ipv6: 'IPv6' } as const;

export default class Netcheck extends WzpCommand<NetcheckReport> {
  static override summary = 'Check this network for calls: UDP, public addresses, NAT behaviour, port allocation, port mapping, relay latency, and a verdict.';
  static override description = `Runs every check concurrently and boxes each one in time from measured round trips (about a second in total, at most --timeout):
  UDP works; the public IPv4 (and IPv6, if an IPv6 server is configured) address, and whether there is a NAT at all; RFC 5780 mapping and filtering behaviour and hairpinning (against the first server that offers OTHER-ADDRESS); how the NAT allocates ports, with the next ports predicted; which port-mapping protocols the gateway answers (PCP, NAT-PMP, UPnP; nothing is left mapped); the QUIC latency of every relay (median of 3 pings) and the preferred one. Then a plain verdict with its reasons.

Relays answer STUN on their port, so --relay alone is enough: a relay gives the public address, and one started with --stun-alternate (two addresses: an RFC 5780 server) also the mapping, filtering and port allocation. STUN servers and relays come from --stun / --relay or from netcheck.json in the config directory ({"stun": ["HOST:PORT"], "relays": [{"address": "HOST:PORT", "fingerprint": "..."}]}); flags win. wzp has no built-in public servers: with none configured, netcheck says how to configure them. Ctrl-C prints what was measured so far (exit 130). The --json report is documented in docs/netcheck.md.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --relay relay.example.com:4433',
    '<%= config.bin %> <%= command.id %> --stun 203.0.113.1:3478 --relay relay.example.com:4433',
    '<%= config.bin %> <%= command.id %> --json > netcheck-report.json',
  ];
  static override flags = {
    stun: Flags.string({ summary: 'STUN server HOST:PORT (repeatable, or comma-separated); replaces netcheck.json\'s.', multiple: true, delimiter: ',' }),
    relay: Flags.string({ summary: 'Relay HOST:PORT (repeatable, or comma-separated); replaces netcheck.json\'s.', multiple: true, delimiter: ',' }),
    gateway: Flags.string({ summary: 'Gateway IPv4 address for the port-mapping probe (default: the default route\'s).' }),
    'port-mapping': Flags.boolean({ summary: 'Probe PCP, NAT-PMP and UPnP on the gateway.', default: true, allowNo: true }),
    count: Flags.integer({ summary: 'How many next external ports to predict.', default: 3, min: 1, max: 64 }),
    timeout: secondsFlag({ summary: 'Hard limit on the whole check, in seconds.', default: 3, min: 0.5, max: 60 }),
    'binding-lifetime': Flags.integer({
      summary: 'Also measure how long the NAT keeps an idle mapping, for at most this many seconds (adds to --timeout).',
      min: 1,
      max: 600,
    }),
  };

  public async run(): Promise<NetcheckReport> {
    const { flags } = await this.parse(Netcheck);
    const tasks = this.interactive ? new CheckTaskList() : undefined;
    try {
      const report = await netcheck({
        stun: flags.stun,
        relays: flags.relay,
        gateway: flags.gateway,
        portMapping: flags['port-mapping'],
        predictCount: flags.count,
        deadlineMs: timeoutMs(flags.timeout),
        bindingLifetimeMaxMs: flags['binding-lifetime'] === undefined ? undefined : flags['binding-lifetime'] * 1000,
        configDir: this.configDir(flags),
        meta: (schemaVersion) => this.reportMeta(schemaVersion, flags),
        signal: this.abortSignal,
        onProgress: tasks?.handle,
        strategies: installedStrategies(this.registries.natStrategies),
      });
      const relays = new Set(report.servers.relays.map((r) => r.address));
      for (const u of report.servers.unresolved) this.warn(relays.has(u.server) ? `relay ${u.server}: ${u.error}` : `STUN server ${u.server} left out: ${u.error}`);
      for (const relay of report.relays) {
        if (relay.error?.name === 'FingerprintMismatchError') this.warn(`${relay.error.message} (possible interception; \`wzp pins forget ${relay.relay}\` only if it legitimately changed)`);
      }
      return report;
    } finally {
      await tasks?.close();
    }
  }

  protected renderHuman(r: NetcheckReport): string {
    const lines = [
      `verdict   ${r.verdict.summary}`,
      ...r.verdict.reasons.map((reason) => `          - ${reason}`),
      ...(r.verdict.strategies ?? []).map((s) => `          - hard-NAT strategy ${s.name}: ${s.does}`),
      '',
    ];
    // "Blocked" only when the verdict says so: one silent server may just be down.
    lines.push(`UDP       ${r.udp.works ? 'works' : r.verdict.kind === 'udp-blocked' ? 'BLOCKED' : 'no answer'} (${r.udp.evidence})`);
    for (const id of ['ipv4', 'ipv6'] as const) {
      const family = r[id];
      const nat = family.natDetected === false ? ' (no NAT: our own address)' : '';
      const across = family.natDetected !== false && family.acrossServers && family.acrossServers.mapping !== 'unknown' ? `; across servers: ${family.acrossServers.mapping}` : '';
      lines.push(`${FAMILY_LABEL[id]}      ${family.reflexiveAddress ?? `${family.status}: ${family.reason ?? ''}`}${nat}${across}`);
    }
    const b = r.behaviour;
    lines.push(
      b.status !== 'ok'
        ? `NAT       ${b.status}: ${b.reason ?? b.error?.message ?? ''}`
        : b.natDetected === false
          ? `NAT       none: ${b.server ?? "the servers"} saw our own address; filtering (by a firewall) ${b.filtering}`
          : `NAT       mapping ${b.mapping}, filtering ${b.filtering}, hairpinning ${b.hairpinning} (against ${b.server})`,
    );
    const a = r.allocation;
    lines.push(a.status === 'ok' ? `ports     ${describeAllocation(a)}` : `ports     ${a.status}: ${a.reason ?? a.error?.message ?? ''}`);
    const pm = r.portMapping;
    lines.push(
      pm.status === 'ok'
        ? `portmap   ${pm.available.length > 0 ? `${pm.available.join(', ')} (external ${pm.externalAddress})` : 'no protocol answered'} at ${pm.gateway}`
        : `portmap   ${pm.status}: ${pm.reason ?? pm.error?.message ?? ''}`,
    );
    for (const [i, relay] of r.relays.entries()) {
      const head = i === 0 ? 'relays   ' : '         ';
      const detail = relay.medianMs === undefined ? `failed: ${relay.error?.message ?? ''}` : `${relay.medianMs} ms${relay.relay === r.preferredRelay?.relay ? ' (preferred)' : ''}`;
      lines.push(`${head} ${relay.relay}  ${detail}`);
    }
    lines.push('', r.interrupted ? `interrupted after ${Math.round(r.durationMs)} ms: checks that had not finished are marked failed or skipped` : `checked in ${Math.round(r.durationMs)} ms`);
    return lines.join('\n');
  }
}

interface Outcome {
  status: CheckStatus;
  detail: string;
}

/**
 * The interactive task list (listr2, on stderr): one line per check, concurrent, each
 * settled by the core's 'netcheck:check-done' event. Only used on a TTY without --json.
 */
class CheckTaskList {
  /** Settles each check's line; created up front, since an event may beat the task's start. */
  private readonly settle = new Map<NetcheckCheckId, (outcome: Outcome) => void>();
  private running: Promise<unknown> | undefined;

  readonly handle = (event: NetcheckEvent): void => {
    if (event.type === 'netcheck:planned') this.start(event.checks);
    else this.settle.get(event.id)?.({ status: event.status, detail: event.detail });
  };

  private start(checks: readonly { id: NetcheckCheckId; title: string }[]): void {
    const outcomes = checks.map((check) => new Promise<Outcome>((resolve) => this.settle.set(check.id, resolve)));
    const list = new Listr(
      checks.map((check, i) => ({
        title: check.title,
        task: async (_ctx: unknown, task: { title: string; skip(message: string): void }) => {
          const outcome = await outcomes[i];
          if (outcome.status === 'failed') throw new Error(`${check.title}: ${outcome.detail}`);
          if (outcome.status === 'skipped') task.skip(`${check.title}: ${outcome.detail}`);
          else task.title = `${check.title}: ${outcome.detail}`;
        },
      })),
      {
        concurrent: true,
        exitOnError: false,
        registerSignalListeners: false,
        fallbackRendererCondition: false,
        silentRendererCondition: false,
        rendererOptions: { logger: new ListrLogger({ processOutput: new ProcessOutput(process.stderr, process.stderr) }) },
      },
    );
    // Failed checks are shown as failed lines; the report carries the details.
    this.running = list.run().catch(() => undefined);
  }

  /** Settles checks the run never reported (it was aborted) and waits for the renderer. */
  async close(): Promise<void> {
    for (const settle of this.settle.values()) settle({ status: 'skipped', detail: 'not run' });
    await this.running;
  }
}
