import { Flags } from '@oclif/core';
import { WzpCommand } from '../base-command.js';
import { identityFile } from '../services/paths.js';
import { showIdentity, type IdentityReport } from '../services/identity.js';

export default class IdentityCommand extends WzpCommand<IdentityReport> {
  static override summary = 'Create or show your wzp identity (a BIP39 seed, its Ed25519 key and fingerprint).';
  static override description = `The identity is 24 recovery words stored in your config directory (mode 0600). Your Ed25519 key and your TLS certificate are derived from it, so the same words always give the same fingerprints. It is created on first use unless --no-create is given.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --identity ./alice.json --show-mnemonic',
  ];
  static override flags = {
    identity: Flags.file({ summary: 'Identity file to use instead of identity.json in the config dir.' }),
    create: Flags.boolean({ summary: 'Create the identity if the file does not exist.', default: true, allowNo: true }),
    'show-mnemonic': Flags.boolean({ summary: 'Also print the 24 recovery words (keep them secret).' }),
  };

  public async run(): Promise<IdentityReport> {
    const { flags } = await this.parse(IdentityCommand);
    return showIdentity({
      path: flags.identity ?? identityFile(this.configDir(flags)),
      create: flags.create,
      revealMnemonic: flags['show-mnemonic'],
    });
  }

  protected renderHuman(r: IdentityReport): string {
    const lines = [
      `${r.created ? 'created' : 'identity'} ${r.path}`,
      `fingerprint      ${r.fingerprint}`,
      `tls fingerprint  ${r.tlsFingerprint}`,
    ];
    if (r.mnemonic) lines.push(`recovery words   ${r.mnemonic}`);
    return lines.join('\n');
  }
}
