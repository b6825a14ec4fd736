import { Flags } from '@oclif/core';
import { describeAllocation } from '../../core/nat/netcheck.js';
import { WzpCommand } from '../base-command.js';
import { predictPortsReport, type PredictPortsReport } from '../services/predict-ports.js';
import { secondsFlag, timeoutMs } from '../connect-flags.js';

export default class PredictPorts extends WzpCommand<PredictPortsReport> {
  static override summary = 'Learn how the NAT allocates external ports and predict the next ones.';
  static override description = `Sends STUN Binding requests one after another from one fresh local socket to every --stun server and --relay (relays answer STUN on their port; a server that offers RFC 5780 OTHER-ADDRESS, such as a relay started with --stun-alternate, adds its other three address/port combinations), so a NAT that maps per destination opens a new mapping each time. The external ports are classified (port-preserving, fixed, sequential with its step, random) and the next --count ports predicted with a confidence: what a peer behind a sequential symmetric NAT needs for hole punching. Ctrl-C prints what was measured so far (exit 130).

Without --stun and --relay the STUN servers and relays in netcheck.json in the config directory are used; there are no built-in ones.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --stun 203.0.113.1:3478',
    '<%= config.bin %> <%= command.id %> --relay relay.example.com:4433',
    '<%= config.bin %> <%= command.id %> --stun 203.0.113.1:3478,198.51.100.7:3478 --count 5 --json',
  ];
  static override flags = {
    stun: Flags.string({ summary: 'STUN server HOST:PORT (repeatable, or comma-separated).', multiple: true, delimiter: ',' }),
    relay: Flags.string({ summary: 'Relay HOST:PORT, asked as a STUN server (repeatable, or comma-separated).', multiple: true, delimiter: ',' }),
    count: Flags.integer({ summary: 'How many next ports to predict.', default: 3, min: 1, max: 1024 }),
    timeout: secondsFlag({ summary: 'Seconds to wait for each answer.', default: 1, min: 0.05, max: 30 }),
  };

  public async run(): Promise<PredictPortsReport> {
    const { flags } = await this.parse(PredictPorts);
    return predictPortsReport({
      stun: flags.stun,
      relays: flags.relay,
      configDir: this.configDir(flags),
      count: flags.count,
      probeTimeoutMs: timeoutMs(flags.timeout),
      signal: this.abortSignal,
    });
  }

  protected renderHuman(r: PredictPortsReport): string {
    const lines = [`allocation  ${describeAllocation(r)}`, `            (${r.explanation})`, ''];
    for (const o of r.observations) lines.push(`  ${o.server.padEnd(24)} saw ${o.mappedAddress}`);
    for (const server of r.unanswered) lines.push(`  ${server.padEnd(24)} no answer`);
    lines.push('', `local port ${r.localPort}, ${r.samples} answers in ${Math.round(r.durationMs)} ms`);
    if (r.interrupted) lines.push('interrupted: the endpoints not yet probed are left out');
    return lines.join('\n');
  }
}
