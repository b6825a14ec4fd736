import { Args } from '@oclif/core';
import { WzpCommand } from '../../base-command.js';
import { forgetPin, type ForgetReport } from '../../services/pins.js';

export default class PinsForget extends WzpCommand<ForgetReport> {
  static override summary = "Forget a relay's pinned fingerprint, so the next connection pins whatever it presents.";
  static override description = 'Use this only when you know the relay legitimately changed its identity; otherwise a changed fingerprint may mean someone is intercepting your connection.';
  static override examples = ['<%= config.bin %> <%= command.id %> relay.example.com:4433'];
  static override args = { relay: Args.string({ description: 'Relay HOST:PORT as pinned.', required: true }) };

  public async run(): Promise<ForgetReport> {
    const { args, flags } = await this.parse(PinsForget);
    return forgetPin(this.configDir(flags), args.relay);
  }

  protected renderHuman(r: ForgetReport): string {
    return r.forgotten ? `forgot ${r.relay}` : `${r.relay} was not pinned`;
  }
}
