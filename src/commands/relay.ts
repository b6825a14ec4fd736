import { Flags } from '@oclif/core';
import { WzpCommand } from '../base-command.js';
import { relayIdentityFile } from '../services/paths.js';
import { runRelay, type RelayRunReport } from '../services/relay.js';

export default class RelayCommand extends WzpCommand<RelayRunReport> {
  static override summary = 'Run a wzp relay: signalling, reflection and media echo over QUIC.';
  static override description = `Listens for QUIC connections from wzp clients. It answers ping and reflect (the client's address as seen from here) and echoes media datagrams for clients in echo mode.

The relay's identity (and so its certificate fingerprint, which clients pin) is kept in a file and survives restarts. Stop it with Ctrl-C or SIGTERM; with --json a summary document is printed on exit.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --listen 0.0.0.0:4433',
    '<%= config.bin %> <%= command.id %> --listen 127.0.0.1:4433 --identity ./relay.json',
  ];
  static override flags = {
    listen: Flags.string({ summary: 'UDP address to listen on, HOST:PORT.', default: '0.0.0.0:4433' }),
    identity: Flags.file({ summary: 'Relay identity file (created if missing). Default: relay-identity.json in the config dir.' }),
    verbose: Flags.boolean({ char: 'v', summary: 'Log connections and dropped signals to stderr.' }),
  };

  public async run(): Promise<RelayRunReport> {
    const { flags } = await this.parse(RelayCommand);
    return runRelay({
      listen: flags.listen,
      identityPath: flags.identity ?? relayIdentityFile(this.configDir(flags)),
      signal: this.abortSignal,
      onStarted: (s) => {
        if (s.identityCreated) this.progress(`created relay identity ${s.identityPath}`);
        // One parseable line on stderr, even with --json, so scripts can find the address.
        process.stderr.write(`wzp relay listening on ${s.address} fingerprint ${s.fingerprint}\n`);
      },
      onEvent: flags.verbose
        ? (e) => process.stderr.write(`${new Date().toISOString()} ${e.type} ${JSON.stringify({ ...e, type: undefined })}\n`)
        : undefined,
    });
  }

  protected renderHuman(r: RelayRunReport): string {
    const m = r.metrics;
    return `relay stopped after ${(r.uptimeMs / 1000).toFixed(1)} s: ${m.connectionsTotal} connections, ${m.datagramsEchoed} datagrams echoed, ${m.signalsMalformed} malformed and ${m.signalsUnknown} unknown signals dropped`;
  }
}
