import { Flags } from '@oclif/core';
import type { PortMapProtocol } from '../../../core/nat/portmap.js';
import { WzpCommand } from '../../base-command.js';
import { PROTOCOLS, PROTOCOL_NAMES, deletePortMapping, readMappingArgument, type PortmapDeleteReport } from '../../services/portmap.js';

export default class PortmapDelete extends WzpCommand<PortmapDeleteReport> {
  static override summary = 'Delete a port mapping: by protocol and external port, or from the JSON `portmap add --json` printed.';
  static override description = `A mapping wzp made on this host is found in its record (port-mappings.json in the config directory). Otherwise: UPnP deletes by external port, NAT-PMP by internal port (--internal-port), and PCP only with the mapping's nonce, i.e. its JSON (--mapping).`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --protocol pcp --external-port 52001',
    '<%= config.bin %> <%= command.id %> --protocol natpmp --internal-port 4433',
    '<%= config.bin %> <%= command.id %> --mapping @mapping.json',
  ];
  static override flags = {
    protocol: Flags.string({ summary: 'Protocol the mapping was made with.', options: [...PROTOCOLS], exclusive: ['mapping'] }),
    'external-port': Flags.integer({ summary: 'External port of the mapping.', min: 1, max: 65535 }),
    'internal-port': Flags.integer({ summary: 'Internal (local) port of the mapping.', min: 1, max: 65535 }),
    mapping: Flags.string({ summary: 'The mapping as JSON (or an `add --json` document): the text, @FILE, or - for stdin.' }),
    gateway: Flags.string({ summary: "Gateway IPv4 address (default: the default route's)." }),
  };

  public async run(): Promise<PortmapDeleteReport> {
    const { flags } = await this.parse(PortmapDelete);
    const report = await deletePortMapping({
      configDir: this.configDir(flags),
      gateway: flags.gateway,
      protocol: flags.protocol as PortMapProtocol | undefined,
      externalPort: flags['external-port'],
      internalPort: flags['internal-port'],
      mappingJson: flags.mapping === undefined ? undefined : await readMappingArgument(flags.mapping),
      signal: this.abortSignal,
    });
    if (!report.found) this.warn(`the gateway has no UDP mapping on external port ${report.externalPort}: nothing deleted`);
    return report;
  }

  protected renderHuman(r: PortmapDeleteReport): string {
    if (!r.found) return 'nothing to delete';
    const port = r.externalPort ? `external port ${r.externalPort}` : `internal port ${r.internalPort}`;
    return `deleted the ${PROTOCOL_NAMES[r.protocol]} mapping on ${port} at ${r.gateway}`;
  }
}
