import { Args, Flags } from '@oclif/core';
import { WzpCommand } from '../base-command.js';
import { reflect, type ReflectReport } from '../services/reflect.js';

export default class Reflect extends WzpCommand<ReflectReport> {
  static override summary = 'Ask a relay which address it sees this machine at (the server-reflexive address).';
  static override examples = ['<%= config.bin %> <%= command.id %> relay.example.com:4433', '<%= config.bin %> <%= command.id %> 127.0.0.1:4433 --json'];
  static override args = {
    relay: Args.string({ description: 'Relay HOST:PORT.', required: true }),
  };
  static override flags = {
    'relay-fingerprint': Flags.string({ summary: 'Trust only this relay certificate fingerprint (overrides the stored pin).' }),
    timeout: Flags.integer({ summary: 'Milliseconds to wait for the answer.', default: 3000, min: 100 }),
  };

  public async run(): Promise<ReflectReport> {
    const { args, flags } = await this.parse(Reflect);
    return reflect({
      relay: args.relay,
      configDir: this.configDir(flags),
      relayFingerprint: flags['relay-fingerprint'],
      timeoutMs: flags.timeout,
      signal: this.abortSignal,
    });
  }

  protected renderHuman(r: ReflectReport): string {
    return `${r.observedAddress}\n(relay ${r.relay}, local ${r.localAddress}, ${r.rttMs} ms)`;
  }
}
