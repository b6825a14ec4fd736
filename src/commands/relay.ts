import { Flags } from '@oclif/core';
import type { OptionFlag } from '@oclif/core/interfaces';
import { WzpCommand } from '../base-command.js';
import { explainListenError } from '../services/listen-error.js';
import { relayIdentityFile } from '../services/paths.js';
import { relayLimitOverrides, runRelay, RELAY_LIMIT_FLAGS, type RelayRunReport } from '../services/relay.js';

/** One integer flag per relay limit (docs/relay-limits.md), in the LIMITS help group. */
const limitFlags = Object.fromEntries(
  RELAY_LIMIT_FLAGS.map((f) => [f.flag, Flags.integer({ summary: f.summary, helpGroup: 'LIMITS', min: 1 })]),
) as Record<(typeof RELAY_LIMIT_FLAGS)[number]['flag'], OptionFlag<number | undefined>>;

export default class RelayCommand extends WzpCommand<RelayRunReport> {
  static override summary = 'Run a wzp relay: rooms (SFU), echo, reflection and signalling over QUIC.';
  static override description = `Listens for QUIC connections from wzp clients. Clients in a room send their media to the relay, which forwards each member's datagrams to every other member without being able to read them (they are end-to-end encrypted), drops stale media for a congested member instead of stalling the room, and relays the members' key exchange. It also echoes media for echo-test, answers ping, reflects each client's address as seen from here, and answers STUN Binding requests on its port (with --stun-alternate on four addresses, as an RFC 5780 server: "wzp netcheck --relay" then learns the NAT's mapping, filtering and port allocation from this relay alone; docs/nat.md).

Members' media moves from QUIC datagrams to the UDP media path once it is confirmed: plain UDP on the same port and the member's QUIC 5-tuple, accepted only with the member's token from its own address, forwarded with no second layer of encryption (docs/transport.md). --no-udp-media keeps all media in QUIC datagrams.

Hostile input is the normal case: a gate in front of QUIC drops what the library mishandles and answers nothing larger than what it received from an unvalidated address; every per-client resource (connections and handshakes per address, joins and signals per connection, room size and members per address, each member's forwarded media, unfinished signal frames) has a limit (the LIMITS flags; docs/relay-limits.md), and what goes over is refused, counted in the summary's "refused" and logged (rate-limited) with -v.

The relay's identity (and so its certificate fingerprint, which clients pin) is kept in a file and survives restarts. --stats N prints a line of load figures to stderr every N seconds. Stop it with Ctrl-C or SIGTERM; a summary is printed on exit (a JSON document with --json).`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --listen 0.0.0.0:4433',
    '<%= config.bin %> <%= command.id %> --listen 127.0.0.1:4433 --identity ./relay.json',
    '<%= config.bin %> <%= command.id %> --listen 203.0.113.1:4433 --stun-alternate 203.0.113.2',
  ];
  static override flags = {
    listen: Flags.string({ summary: 'UDP address to listen on, HOST:PORT.', default: '0.0.0.0:4433' }),
    identity: Flags.file({ summary: 'Relay identity file (created if missing). Default: relay-identity.json in the config dir.' }),
    verbose: Flags.boolean({ char: 'v', summary: 'Log connections, joins, leaves and dropped signals to stderr.' }),
    'udp-media': Flags.boolean({
      summary: 'Offer members the UDP media path (media outside QUIC, still end-to-end encrypted).',
      default: true,
      allowNo: true,
    }),
    stats: Flags.integer({ summary: 'Every this many seconds, print connections, rooms and datagrams forwarded per second to stderr.', min: 1 }),
    'stun-alternate': Flags.string({
      summary:
        "A second address of this host, IP[:PORT] (port default: the relay's + 1), for RFC 5780 STUN: with it netcheck learns the NAT's mapping and filtering from this relay alone. Needs --listen on one address.",
    }),
    'debug-tap': Flags.string({
      summary:
        "Log each media packet of this room (its name, or its 32-hex-digit id for a room with a secret) or of every room (*) to stderr: header metadata only (source, sequence, codec, tier, FEC, size, fan-out, path), never payload; at most 50 lines a second (docs/relay-operations.md#debug-tap).",
    }),
    ...limitFlags,
  };

  public async run(): Promise<RelayRunReport> {
    const { flags } = await this.parse(RelayCommand);
    try {
      return await runRelay({
        listen: flags.listen,
        identityPath: flags.identity ?? relayIdentityFile(this.configDir(flags)),
        udpMedia: flags['udp-media'],
        limits: relayLimitOverrides(flags),
        stunAlternate: flags['stun-alternate'],
        signal: this.abortSignal,
        onStarted: (s) => {
          if (s.identityCreated) this.progress(`created relay identity ${s.identityPath}`);
          // One parseable line on stderr, even with --json, so scripts can find the address.
          process.stderr.write(`wzp relay listening on ${s.address} fingerprint ${s.fingerprint}\n`);
          if (s.stunEndpoints.length > 1) this.progress(`answering STUN (RFC 5780) on ${s.stunEndpoints.join(', ')}`);
        },
        onEvent: flags.verbose ? (e) => logLine(e.type, { ...e, type: undefined }) : undefined,
        statsIntervalMs: flags.stats === undefined ? undefined : flags.stats * 1000,
        onStats: (s) => logLine('relay:stats', s),
        ...(flags['debug-tap'] === undefined ? {} : { debugTap: flags['debug-tap'] }),
        // Always given, so a tap set another way (a config file) logs the same way.
        onTap: (fields) => logLine('relay:tap', fields),
      });
    } catch (err) {
      // The transport words every bind failure alike; say which one it was.
      throw explainListenError(err, flags.listen);
    }
  }

  protected renderHuman(r: RelayRunReport): string {
    const m = r.metrics;
    return [
      `relay stopped after ${(r.uptimeMs / 1000).toFixed(1)} s: ${m.connectionsTotal} connections`,
      `  datagrams: ${m.datagramsReceived} received (${m.datagramsOnUdpPath} on the UDP media path), ${m.datagramsForwarded} forwarded in rooms, ${m.datagramsEchoed} echoed, ` +
        `${m.datagramsPurged} purged as stale, ${m.datagramsDropped} dropped, ${m.datagramsUnexpected} unexpected, ${m.udpPathRejected} refused UDP packets`,
      `  signals: ${m.signalsReceived} received, ${m.signalsMalformed} malformed and ${m.signalsUnknown} unknown dropped`,
      `  presence: ${m.presence.registrationsTotal} registrations (${m.presence.registrationsReplaced} replaced an older one), ${m.presence.callSignalsRouted} call signals routed, ${m.presence.callSignalsOffline} answered offline`,
      `  STUN: ${m.stunRequests} received, ${m.stunAnswered} answered, ${m.stunErrors} refused with an error answer; dropped: ${refusedText(m.stunDropped)}`,
      `  refused: ${refusedText(m.refused)}; ${m.socketErrors} datagrams the QUIC library failed on, ${m.sendErrors} sends the kernel refused`,
    ].join('\n');
  }
}

/** One timestamped line on stderr: `ISO-time type {json}` (the -v log and --stats share it). */
function logLine(type: string, fields: object): void {
  process.stderr.write(`${new Date().toISOString()} ${type} ${JSON.stringify(fields)}\n`);
}

/** "12 join-rate, 3 small-initial" (largest first), or "nothing". */
function refusedText(refused: Record<string, number>): string {
  const parts = Object.entries(refused)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([reason, n]) => `${n} ${reason}`);
  return parts.length ? parts.join(', ') : 'nothing';
}
