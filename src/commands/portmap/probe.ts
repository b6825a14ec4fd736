import { Flags } from '@oclif/core';
import { WzpCommand } from '../../base-command.js';
import { PROTOCOLS, PROTOCOL_NAMES, probePortMapping, type PortmapProbeReport } from '../../services/portmap.js';

export default class PortmapProbe extends WzpCommand<PortmapProbeReport> {
  static override summary = 'Ask the gateway which port-mapping protocols it answers (PCP, NAT-PMP, UPnP) and its external address.';
  static override description =
    'All three protocols are asked at once. Nothing is left behind: NAT-PMP and UPnP have query-only requests, and PCP (which has none) maps a throwaway port and deletes it at once.';
  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --gateway 192.168.1.1 --json'];
  static override flags = {
    gateway: Flags.string({ summary: "Gateway IPv4 address (default: the default route's)." }),
  };

  public async run(): Promise<PortmapProbeReport> {
    const { flags } = await this.parse(PortmapProbe);
    return probePortMapping({ configDir: this.configDir(flags), gateway: flags.gateway, signal: this.abortSignal });
  }

  protected renderHuman(r: PortmapProbeReport): string {
    const lines = [`gateway   ${r.gateway}`, `external  ${r.externalAddress ?? 'unknown (no protocol answered)'}`];
    for (const protocol of PROTOCOLS) {
      const p = r.protocols[protocol];
      const detail = p.available
        ? `available${p.igdVersion ? ` (IGDv${p.igdVersion})` : ''}, external ${p.externalAddress}`
        : `no: ${p.error?.reason ?? p.error?.name}: ${p.error?.message}`;
      lines.push(`${PROTOCOL_NAMES[protocol].padEnd(9)} ${detail}  [${p.elapsedMs} ms]${p.leftover ? '  (its throwaway mapping could not be deleted: it expires by itself)' : ''}`);
    }
    return lines.join('\n');
  }
}
