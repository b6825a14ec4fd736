import { Flags } from '@oclif/core';
import { WzpCommand } from '../base-command.js';
import { listExtensions, type ExtensionListing } from '../services/extensions.js';

export default class Extensions extends WzpCommand<ExtensionListing> {
  static override summary = 'List the codecs, FEC schemes and NAT strategies that plugins registered.';
  static override description = 'Shows each extension with the plugin that registered it and whether it can run on this machine. Plugins are managed with `wzp plugins`.';
  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --kind codec --json'];
  static override flags = {
    kind: Flags.string({ summary: 'Only this kind.', options: ['codec', 'fec', 'nat-strategy'] }),
  };

  public async run(): Promise<ExtensionListing> {
    const { flags } = await this.parse(Extensions);
    return listExtensions(this.registries, flags.kind as 'codec' | 'fec' | 'nat-strategy' | undefined);
  }

  protected renderHuman(r: ExtensionListing): string {
    const rows = r.extensions.map((e) => [
      e.kind,
      e.name,
      e.id === undefined ? '' : String(e.id),
      e.version,
      e.plugin,
      e.available ? 'yes' : `no: ${e.reason}${e.hint ? ` (${e.hint})` : ''}`,
    ]);
    return table(['KIND', 'NAME', 'ID', 'VERSION', 'PLUGIN', 'AVAILABLE'], rows);
  }
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}
