import { Flags } from '@oclif/core';
import type { OptionFlag } from '@oclif/core/interfaces';
import { WzpCommand } from '../base-command.js';
import { explainListenError } from '../services/listen-error.js';
import { relayIdentityFile } from '../services/paths.js';
import { relayLimitOverrides, runRelay, RELAY_LIMIT_FLAGS, type RelayRunReport } from '../services/relay.js';
import {
  checkConfigCreatable,
  DEFAULT_RELAY_LISTEN,
  readRelayConfig,
  RelayConfigReloader,
  relaySettings,
  writeRelayConfigExample,
  type RelayFlagSettings,
} from '../services/relay-config.js';
import { DEFAULT_AUTH_CACHE_SECONDS } from '../../core/relay/auth.js';
import { parseAclFlag } from '../../core/relay/access.js';
import { DEFAULT_DRAIN_TIMEOUT_MS, MAX_DRAIN_TIMEOUT_MS } from '../services/relay-drain.js';
import { parseGlobalRoomFlag, parsePeerFlag } from '../services/relay-federation.js';

/** One integer flag per relay limit (docs/relay-limits.md), in the LIMITS help group. */
const limitFlags = Object.fromEntries(
  RELAY_LIMIT_FLAGS.map((f) => [f.flag, Flags.integer({ summary: f.summary, helpGroup: 'LIMITS', min: 1 })]),
) as Record<(typeof RELAY_LIMIT_FLAGS)[number]['flag'], OptionFlag<number | undefined>>;

export default class RelayCommand extends WzpCommand<RelayRunReport> {
  static override summary = 'Run a wzp relay: rooms (SFU), echo, reflection and signalling over QUIC.';
  static override description = `Listens for QUIC connections from wzp clients. Clients in a room send their media to the relay, which forwards each member's datagrams to every other member without being able to read them (they are end-to-end encrypted), drops stale media for a congested member instead of stalling the room, and relays the members' key exchange. It also echoes media for echo-test, answers ping, reflects each client's address as seen from here, and answers STUN Binding requests on its port (with --stun-alternate on four addresses, as an RFC 5780 server: "wzp netcheck --relay" then learns the NAT's mapping, filtering and port allocation from this relay alone; docs/nat.md).

Members' media moves from QUIC datagrams to the UDP media path once it is confirmed: plain UDP on the same port and the member's QUIC 5-tuple, accepted only with the member's token from its own address, forwarded with no second layer of encryption (docs/transport.md). --no-udp-media keeps all media in QUIC datagrams.

Hostile input is the normal case: a gate in front of QUIC drops what the library mishandles and answers nothing larger than what it received from an unvalidated address; every per-client resource (connections and handshakes per address, joins and signals per connection, room size and members per address, each member's forwarded media, unfinished signal frames) has a limit (the LIMITS flags; docs/relay-limits.md), and what goes over is refused, counted in the summary's "refused" and logged (rate-limited) with -v.

The relay's identity (and so its certificate fingerprint, which clients pin) is kept in a file and survives restarts. --stats N prints a line of load figures to stderr every N seconds; --metrics HOST:PORT serves Prometheus metrics, /healthz and /readyz over HTTP (docs/relay-operations.md). Ctrl-C stops it at once. SIGTERM drains it first: it refuses new joins, registrations and call offers (reason "draining"), tells every client so that those given several relays move to the next one at once, and stops when its rooms and calls are empty or after --drain-timeout seconds; a second SIGTERM stops it at once (docs/relay-operations.md). A summary is printed on exit (a JSON document with --json; exit 0 in every case).

--peer, --trusted and --global-room (or the config file's [[peers]], [[trusted]] and [[global_rooms]]) link relays into a federation whose global rooms span them all (docs/federation.md).

--config FILE reads the settings from a TOML file (flags given on the command line override it); if FILE does not exist the relay writes a commented example there, with every option, its default, and this relay's address and fingerprint, and runs with it. SIGHUP reloads the file: stats, [limits], [auth] and [[rooms]] change at once and each change is logged; a file with an error is refused whole and the running config stays (docs/relay-operations.md).`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --listen 0.0.0.0:4433',
    '<%= config.bin %> <%= command.id %> --listen 127.0.0.1:4433 --identity ./relay.json',
    '<%= config.bin %> <%= command.id %> --listen 203.0.113.1:4433 --stun-alternate 203.0.113.2',
    '<%= config.bin %> <%= command.id %> --listen 0.0.0.0:4433 --metrics 127.0.0.1:9464',
    {
      description: 'Run from a config file (written with every option documented if it does not exist); reload it with kill -HUP',
      command: '<%= config.bin %> <%= command.id %> --config /etc/wzp/relay.toml',
    },
    '<%= config.bin %> <%= command.id %> --listen 0.0.0.0:4433 --drain-timeout 120',
  ];
  static override flags = {
    config: Flags.string({
      char: 'c',
      summary: 'TOML config file (written as a commented example if missing; SIGHUP reloads it). Flags given here override it.',
    }),
    // No oclif default: a default would look given and override the config file (applied in relaySettings).
    listen: Flags.string({ summary: `UDP address to listen on, HOST:PORT. Default: ${DEFAULT_RELAY_LISTEN}.` }),
    identity: Flags.file({ char: 'i', summary: 'Relay identity file (created if missing). Default: relay-identity.json in the config dir.' }),
    verbose: Flags.boolean({ char: 'v', summary: 'Log connections, joins, leaves and dropped signals to stderr.' }),
    'udp-media': Flags.boolean({
      summary: 'Offer members the UDP media path (media outside QUIC, still end-to-end encrypted). Default: on.',
      allowNo: true,
    }),
    'media-plane': Flags.boolean({
      summary: 'Forward room media on the UDP media path in a thread of its own, in batches (64-bit Linux). Default: on.',
      allowNo: true,
    }),
    stats: Flags.integer({ summary: 'Every this many seconds, print connections, rooms and datagrams forwarded per second to stderr.', min: 1 }),
    'stun-alternate': Flags.string({
      summary:
        "A second address of this host, IP[:PORT] (port default: the relay's + 1), for RFC 5780 STUN: with it netcheck learns the NAT's mapping and filtering from this relay alone. Needs --listen on one address.",
    }),
    'auth-url': Flags.string({
      summary: 'Require a token from every client, checked by POST to this URL with "Authorization: Bearer TOKEN" (featherChat-compatible; docs/relay-operations.md).',
      helpGroup: 'ACCESS',
    }),
    'auth-fail-open': Flags.boolean({ summary: 'Admit clients when the auth service is down, slow or answers garbage (default: refuse them).', helpGroup: 'ACCESS', dependsOn: ['auth-url'] }),
    'auth-cache-seconds': Flags.integer({ summary: `Keep the auth service's answers this many seconds (0: ask every time). Default: ${DEFAULT_AUTH_CACHE_SECONDS}.`, helpGroup: 'ACCESS', min: 0 }),
    acl: Flags.string({
      summary: 'Restrict a room to these identities: ROOM=FINGERPRINT[,FINGERPRINT...] (id:HEX for a room with a secret); repeatable. Members prove their identity to the relay.',
      helpGroup: 'ACCESS',
      multiple: true,
    }),
    peer: Flags.string({
      summary: "Dial this relay and link to it (relay federation): HOST:PORT=FINGERPRINT, its address and certificate fingerprint; repeatable. Replaces the config file's [[peers]] (docs/federation.md).",
      helpGroup: 'FEDERATION',
      multiple: true,
    }),
    trusted: Flags.string({
      summary: "Accept links from the relay with this certificate fingerprint; repeatable. Replaces the config file's [[trusted]].",
      helpGroup: 'FEDERATION',
      multiple: true,
    }),
    'global-room': Flags.string({
      summary: "Share this room with the linked relays (its name, or id:HEX for a room with a secret); repeatable. Replaces the config file's [[global_rooms]].",
      helpGroup: 'FEDERATION',
      multiple: true,
    }),
    metrics: Flags.string({
      summary: 'Serve Prometheus metrics (/metrics), /healthz and /readyz over HTTP on HOST:PORT, e.g. 127.0.0.1:9464 (docs/relay-operations.md).',
    }),
    'drain-timeout': Flags.integer({
      summary: `On SIGTERM, wait this many seconds for the rooms and calls to end before stopping (default ${DEFAULT_DRAIN_TIMEOUT_MS / 1000}; 0: stop right after telling the clients).`,
      min: 0,
      max: MAX_DRAIN_TIMEOUT_MS / 1000,
      helpValue: 'SECONDS',
    }),
    'source-id-prefix': Flags.integer({
      summary: "The high 16 bits of the source ids this relay gives its room members (0-65535; default: from its fingerprint). Relays of a federation need different ones (docs/federation.md).",
      helpGroup: 'FEDERATION',
      min: 0,
      max: 0xffff,
      helpValue: 'N',
    }),
    'debug-tap': Flags.string({
      summary:
        "Log each media packet of this room (its name, or its 32-hex-digit id for a room with a secret) or of every room (*) to stderr: header metadata only (source, sequence, codec, tier, FEC, size, fan-out, path), never payload; at most 50 lines a second (docs/relay-operations.md#debug-tap).",
    }),
    ...limitFlags,
  };

  /** Aborted by the first SIGTERM: the relay drains (a second SIGTERM, or Ctrl-C, stops it at once). */
  private readonly drainRequest = new AbortController();

  protected override interceptSignal(sig: NodeJS.Signals): boolean {
    if (sig !== 'SIGTERM' || this.drainRequest.signal.aborted || this.abortSignal.aborted) return false;
    this.drainRequest.abort(new Error(`received ${sig}`));
    return true;
  }

  public async run(): Promise<RelayRunReport> {
    const { flags } = await this.parse(RelayCommand);
    const configPath = flags.config;
    const given: RelayFlagSettings = {
      listen: flags.listen,
      identity: flags.identity,
      udpMedia: flags['udp-media'],
      mediaPlane: flags['media-plane'],
      stunAlternate: flags['stun-alternate'],
      statsSeconds: flags.stats,
      limits: relayLimitOverrides(flags),
      ...(flags.metrics === undefined ? {} : { metrics: flags.metrics }),
      ...(flags['debug-tap'] === undefined ? {} : { debugTap: flags['debug-tap'] }),
      ...(flags['drain-timeout'] === undefined ? {} : { drainTimeoutSeconds: flags['drain-timeout'] }),
      ...(flags['source-id-prefix'] === undefined ? {} : { sourceIdPrefix: flags['source-id-prefix'] }),
      ...(flags['auth-url'] === undefined
        ? {}
        : { auth: { url: flags['auth-url'], ...(flags['auth-fail-open'] ? { failOpen: true } : {}), ...(flags['auth-cache-seconds'] === undefined ? {} : { cacheSeconds: flags['auth-cache-seconds'] }) } }),
      ...(flags.acl === undefined ? {} : { roomAcls: flags.acl.map(parseAclFlag) }),
      ...(flags.peer === undefined ? {} : { peers: flags.peer.map(parsePeerFlag) }),
      ...(flags.trusted === undefined ? {} : { trusted: flags.trusted }),
      ...(flags['global-room'] === undefined ? {} : { globalRooms: flags['global-room'].map(parseGlobalRoomFlag) }),
    };
    const file = configPath === undefined ? undefined : await readRelayConfig(configPath);
    if (configPath !== undefined && !file) await checkConfigCreatable(configPath);
    const settings = relaySettings(file?.config, given, { identityPath: relayIdentityFile(this.configDir(flags)) });
    const reloader =
      configPath === undefined ? undefined : new RelayConfigReloader({ path: configPath, flags: given, baseline: file?.config ?? { limits: {}, rooms: [] }, log: (line) => logText(line) });
    // SIGHUP reloads the config file; without one it is logged and ignored (rather than
    // ending the relay, as it would by default). Removed when the relay stops.
    const onHangup = () => (reloader ? reloader.request() : logText('relay:reload-failed no config file to reload (start the relay with --config FILE)'));
    process.on('SIGHUP', onHangup);
    try {
      return await runRelay({
        ...settings,
        signal: this.abortSignal,
        drain: this.drainRequest.signal,
        onDraining: (d) => {
          // Always on stderr (as the listening line): operators and scripts watch for it.
          process.stderr.write(
            `wzp relay draining: refusing new sessions, ${d.sessions} in progress on ${d.connections} connections; stopping when they end or in ${d.timeoutMs / 1000} s (SIGTERM again to stop now)\n`,
          );
        },
        onStarted: async (s) => {
          if (s.identityCreated) this.progress(`created relay identity ${s.identityPath}`);
          // Before the "listening" line: a script that waits for that line has the URL too.
          if (s.metricsUrl !== undefined) process.stderr.write(`wzp relay metrics on ${s.metricsUrl} (/healthz, /readyz)\n`);
          // One parseable line on stderr, even with --json, so scripts can find the address.
          process.stderr.write(`wzp relay listening on ${s.address} fingerprint ${s.fingerprint}\n`);
          if (s.stunEndpoints.length > 1) this.progress(`answering STUN (RFC 5780) on ${s.stunEndpoints.join(', ')}`);
          if (configPath !== undefined && !file) {
            // Written now that the address (a port 0 is resolved) and fingerprint are known.
            const example = await writeRelayConfigExample(configPath, { listen: s.address, identity: s.identityPath, fingerprint: s.fingerprint });
            reloader?.setBaseline(example.config);
            this.progress(`created relay config ${configPath} (every option documented; edit it and send SIGHUP to reload)`);
          }
          if (settings.auth !== undefined) {
            const u = new URL(settings.auth.url); // checked by now; its query (which may hold a key) is not shown
            this.progress(`admitting clients whose token ${u.origin}${u.pathname} accepts (fail ${settings.auth.failOpen ? 'open' : 'closed'})`);
          }
          if (settings.roomAcls?.length) this.progress(`${settings.roomAcls.length} room(s) restricted to listed identities`);
        },
        onRunning: (relay, live) => reloader?.attach(relay, live),
        onEvent: flags.verbose ? (e) => logLine(e.type, { ...e, type: undefined }) : undefined,
        // Link events are few and what an operator of a federation watches: always logged.
        onFederationEvent: (e) => logLine(e.type, { ...e, type: undefined }),
        // So is a media plane that could not start or failed: the relay then forwards on its main thread, slower.
        onMediaPlane: (e) => logLine(e.type, { ...e, type: undefined }),
        onStats: (s) => logLine('relay:stats', s),
        // Always given, so a tap set another way (a config file) logs the same way.
        onTap: (fields) => logLine('relay:tap', fields),
      });
    } catch (err) {
      // The transport words every bind failure alike; say which one it was.
      throw explainListenError(err, settings.listen);
    } finally {
      process.off('SIGHUP', onHangup);
      await reloader?.idle();
    }
  }

  protected renderHuman(r: RelayRunReport): string {
    const m = r.metrics;
    return [
      `relay stopped after ${(r.uptimeMs / 1000).toFixed(1)} s: ${m.connectionsTotal} connections`,
      `  datagrams: ${m.datagramsReceived} received (${m.datagramsOnUdpPath} on the UDP media path), ${m.datagramsForwarded} forwarded in rooms, ${m.datagramsEchoed} echoed, ` +
        `${m.datagramsPurged} purged as stale, ${m.datagramsDropped} dropped, ${m.datagramsUnexpected} unexpected, ${m.udpPathRejected} refused UDP packets`,
      `  signals: ${m.signalsReceived} received, ${m.signalsMalformed} malformed and ${m.signalsUnknown} unknown dropped`,
      ...(Object.values(m.auth).some((n) => n > 0)
        ? [`  auth: ${m.auth.ok} tokens accepted, ${m.auth.refused} refused, ${m.auth.error} not checkable, ${m.auth.cached} answered from the cache, ${m.auth.busy} over the check limit`]
        : []),
      `  presence: ${m.presence.registrationsTotal} registrations (${m.presence.registrationsReplaced} replaced an older one), ${m.presence.callSignalsRouted} call signals routed, ${m.presence.callSignalsOffline} answered offline`,
      `  STUN: ${m.stunRequests} received, ${m.stunAnswered} answered, ${m.stunErrors} refused with an error answer; dropped: ${refusedText(m.stunDropped)}`,
      `  refused: ${refusedText(m.refused)}; ${m.socketErrors} datagrams the QUIC library failed on, ${m.sendErrors} sends the kernel refused`,
      ...(r.drain ? [`  drained for ${(r.drain.durationMs / 1000).toFixed(1)} s (${DRAIN_ENDINGS[r.drain.endedBy]}): ${r.drain.sessionsAtStart} sessions at the start, ${r.drain.sessionsLeft} left at the stop`] : []),
    ].join('\n');
  }
}

const DRAIN_ENDINGS = { empty: 'every room and call ended', timeout: 'the drain timeout passed', stopped: 'stopped at once' } as const;

/** One timestamped line on stderr: `ISO-time type {json}` (the -v log and --stats share it). */
function logLine(type: string, fields: object): void {
  process.stderr.write(`${new Date().toISOString()} ${type} ${JSON.stringify(fields)}\n`);
}

/** One timestamped line of text on stderr: `ISO-time type words` (the config reload's log). */
function logText(line: string): void {
  process.stderr.write(`${new Date().toISOString()} ${line}\n`);
}

/** "12 join-rate, 3 small-initial" (largest first), or "nothing". */
function refusedText(refused: Record<string, number>): string {
  const parts = Object.entries(refused)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([reason, n]) => `${n} ${reason}`);
  return parts.length ? parts.join(', ') : 'nothing';
}
