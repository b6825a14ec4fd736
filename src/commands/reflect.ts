import { Args, Flags } from '@oclif/core';
import { WzpCommand } from '../base-command.js';
import { reflect, type ReflectReport } from '../services/reflect.js';
import { secondsFlag, timeoutMs } from '../connect-flags.js';

const MAPPING_TEXT: Record<ReflectReport['mapping'], string> = {
  'endpoint-independent': 'endpoint-independent: every server saw the same address (a cone NAT)',
  symmetric: 'symmetric: a new port for each destination (address- or address-and-port-dependent mapping)',
  'multiple-addresses': 'several public addresses: servers saw different IPs (multiple uplinks or a NAT address pool)',
  unknown: 'unknown',
};

export default class Reflect extends WzpCommand<ReflectReport> {
  static override summary = 'Ask relays and STUN servers which address they see this machine at, from one local socket.';
  static override description = `Connects to every RELAY (QUIC, pinned like every wzp connection) and asks it to reflect our address, and sends a STUN Binding request to every --stun server, all from ONE local UDP socket: if the answers differ, the NAT opens a new mapping per destination (symmetric), which hole punching has to work around.

STUN servers stand in when a relay cannot be reached. A relay started with --stun-alternate (an RFC 5780 STUN server) is also asked at its second address, so one such relay is enough to compare. If every server saw this host's own address, there is no NAT. Ctrl-C prints the answers received so far (exit 130).

With no RELAY and no --stun, the servers in netcheck.json in the config directory are used; wzp never asks a server you did not name.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> relay.example.com:4433',
    '<%= config.bin %> <%= command.id %> relay1.example.com:4433 relay2.example.net:4433 --json',
    '<%= config.bin %> <%= command.id %> relay.example.com:4433 --stun 198.51.100.7:3478',
  ];
  static override strict = false;
  static override args = {
    relay: Args.string({ description: 'Relays, HOST:PORT (one or more).', required: false }),
  };
  static override flags = {
    stun: Flags.string({ summary: 'STUN server HOST:PORT to ask as well (repeatable, or comma-separated).', multiple: true, delimiter: ',' }),
    'relay-fingerprint': Flags.string({ summary: 'Trust only this certificate fingerprint for the one RELAY given (overrides the stored pin).' }),
    timeout: secondsFlag({ summary: 'Seconds to wait for each server.', default: 3, min: 0.1, max: 60 }),
  };

  public async run(): Promise<ReflectReport> {
    const { argv, flags } = await this.parse(Reflect);
    const report = await reflect({
      relays: argv as string[],
      stun: flags.stun ?? [],
      configDir: this.configDir(flags),
      relayFingerprint: flags['relay-fingerprint'],
      timeoutMs: timeoutMs(flags.timeout),
      signal: this.abortSignal,
    });
    for (const o of report.observations) {
      if (o.error && !report.interrupted) this.warn(`${o.relay} (${o.via}) did not answer: ${o.error.message}`);
    }
    return report;
  }

  protected renderHuman(r: ReflectReport): string {
    const lines = [r.observedAddress, ''];
    for (const o of r.observations) {
      const answer = o.observedAddress ? `${o.observedAddress}  ${o.rttMs} ms` : `no answer (${o.error?.name})`;
      const what = o.alternateOf ? `${o.relay} (relay ${o.alternateOf}'s other address)` : o.relay;
      lines.push(`  ${o.via === 'quic' ? 'relay' : 'stun '} ${what.padEnd(24)} ${answer}`);
    }
    if (r.interrupted) lines.push('', 'interrupted: the servers that had not answered are listed without an answer');
    lines.push('', `local   ${r.localAddress}`);
    if (r.natDetected === false) {
      lines.push("NAT     none: the servers saw this host's own address, so it is publicly reachable at it; only a firewall (this host's, or one in the network) filters what comes in");
    } else {
      lines.push(`mapping ${MAPPING_TEXT[r.mapping]}`);
      if (r.mapping === 'unknown') lines.push(`        (${r.reason})`);
    }
    for (const note of r.notes) lines.push(`note    ${note}`);
    return lines.join('\n');
  }
}
