import { Flags } from '@oclif/core';
import { WzpCommand } from '../../base-command.js';
import { describeMapping, listPortMappings, type PortmapListReport } from '../../services/portmap.js';

export default class PortmapList extends WzpCommand<PortmapListReport> {
  static override summary = "List the port mappings wzp made on this host, and the gateway's UPnP mapping table.";
  static override description =
    "PCP and NAT-PMP have no list operation: a host knows only the mappings it made, which wzp records until they are deleted or expire. The UPnP table is the gateway's own (every host's mappings; miniupnpd-style gateways show PCP and NAT-PMP mappings there too).";
  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --json'];
  static override flags = {
    gateway: Flags.string({ summary: "Gateway IPv4 address (default: the default route's)." }),
  };

  public async run(): Promise<PortmapListReport> {
    const { flags } = await this.parse(PortmapList);
    return listPortMappings({ configDir: this.configDir(flags), gateway: flags.gateway, signal: this.abortSignal });
  }

  protected renderHuman(r: PortmapListReport): string {
    const lines = [`made by wzp here (${r.recordFile}):`];
    if (r.recorded.length === 0) lines.push('  none');
    for (const rec of r.recorded) lines.push(`  ${describeMapping(rec.mapping)}, ${rec.expiresAt === null ? 'permanent' : `until ${rec.expiresAt}`}`);
    lines.push('', "gateway's UPnP table:");
    if ('error' in r.gatewayTable) lines.push(`  unavailable: ${r.gatewayTable.error.message}`);
    else if (r.gatewayTable.entries.length === 0) lines.push('  empty');
    else {
      for (const e of r.gatewayTable.entries) {
        const lease = e.leaseDurationS === 0 ? 'permanent' : `${e.leaseDurationS} s left`;
        lines.push(`  ${e.protocol} ${e.externalPort} -> ${e.internalClient}:${e.internalPort}  ${lease}  "${e.description}"${e.enabled ? '' : ' (disabled)'}`);
      }
    }
    return lines.join('\n');
  }
}
