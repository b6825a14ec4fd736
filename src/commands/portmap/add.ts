import { Flags } from '@oclif/core';
import type { PortMapProtocol } from '../../../core/nat/portmap.js';
import { WzpCommand } from '../../base-command.js';
import { DEFAULT_LIFETIME_S, PROTOCOLS, addPortMapping, describeMapping, type PortmapAddReport } from '../../services/portmap.js';

export default class PortmapAdd extends WzpCommand<PortmapAddReport> {
  static override summary = 'Ask the gateway to forward an external UDP port to a local one.';
  static override description = `Tries the protocols in order (default PCP, NAT-PMP, UPnP) and uses the first that maps. The external port is a suggestion: use the one reported.

Without --keep the mapping is left in place and the command exits: it expires after its lifetime (default ${DEFAULT_LIFETIME_S.left} s), or delete it with \`wzp portmap delete\`. With --keep it is renewed at half its lifetime (default ${DEFAULT_LIFETIME_S.kept} s) until Ctrl-C, then deleted. Mappings are recorded in port-mappings.json in the config directory until deleted, so that delete can find them.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --internal-port 4433',
    '<%= config.bin %> <%= command.id %> --internal-port 4433 --external-port 4433 --protocol pcp,natpmp --keep',
    '<%= config.bin %> <%= command.id %> --internal-port 4433 --lifetime 600 --json > mapping.json',
  ];
  static override flags = {
    'internal-port': Flags.integer({ summary: 'Local UDP port to forward to.', required: true, min: 1, max: 65535 }),
    'external-port': Flags.integer({ summary: "Suggested external port (default: the gateway's choice).", min: 0, max: 65535 }),
    lifetime: Flags.integer({ summary: `Lifetime in seconds (default ${DEFAULT_LIFETIME_S.left}, or ${DEFAULT_LIFETIME_S.kept} with --keep).`, min: 1, max: 0xffffffff }),
    protocol: Flags.string({ summary: 'Protocols to try, in order (repeatable or comma-separated).', multiple: true, delimiter: ',', options: [...PROTOCOLS] }),
    keep: Flags.boolean({ summary: 'Renew the mapping until Ctrl-C, then delete it.', default: false }),
    gateway: Flags.string({ summary: "Gateway IPv4 address (default: the default route's)." }),
  };

  public async run(): Promise<PortmapAddReport> {
    const { flags } = await this.parse(PortmapAdd);
    return addPortMapping({
      configDir: this.configDir(flags),
      gateway: flags.gateway,
      internalPort: flags['internal-port'],
      externalPort: flags['external-port'],
      lifetimeS: flags.lifetime,
      protocols: flags.protocol as PortMapProtocol[] | undefined,
      keep: flags.keep,
      signal: this.abortSignal,
      onMapped: (m) => {
        if (flags.keep) this.progress(`mapped ${describeMapping(m)}; renewing every ${m.lifetimeS / 2} s until Ctrl-C`);
      },
      onRenewed: (m) => this.progress(`renewed ${describeMapping(m)} for ${m.lifetimeS} s`),
    });
  }

  protected renderHuman(r: PortmapAddReport): string {
    if (r.deleted) return `deleted ${describeMapping(r.mapping)} after ${r.renewals} renewal${r.renewals === 1 ? '' : 's'}`;
    const until = r.expiresAt === null ? 'a permanent lease' : `lifetime ${r.mapping.lifetimeS} s, until ${r.expiresAt}`;
    return [`mapped ${describeMapping(r.mapping)} (${until})`, `left in place: it expires by itself, or delete it with:`, `  ${r.deleteWith}`].join('\n');
  }
}
