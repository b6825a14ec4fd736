import { WzpCommand } from '../../base-command.js';
import { listPins, type PinListing } from '../../services/pins.js';

export default class PinsList extends WzpCommand<PinListing> {
  static override summary = 'List the relays whose certificate fingerprints are pinned (trust on first use).';
  static override examples = ['<%= config.bin %> <%= command.id %>'];

  public async run(): Promise<PinListing> {
    const { flags } = await this.parse(PinsList);
    return listPins(this.configDir(flags));
  }

  protected renderHuman(r: PinListing): string {
    if (r.pins.length === 0) return `no relays pinned (${r.path})`;
    return r.pins.map((p) => `${p.relay}  ${p.fingerprint}  first seen ${p.firstSeen}`).join('\n');
  }
}
