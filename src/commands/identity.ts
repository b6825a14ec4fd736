import { Flags } from '@oclif/core';
import { UsageError } from '../../core/errors.js';
import { WzpCommand } from '../base-command.js';
import { identityFile } from '../services/paths.js';
import { restoreIdentityFromWords, showIdentity, type IdentityReport } from '../services/identity.js';

export default class IdentityCommand extends WzpCommand<IdentityReport> {
  static override summary = 'Create, show or restore your wzp identity (a BIP39 seed, its Ed25519 key and fingerprint).';
  static override description = `The identity is 24 recovery words stored in your config directory (mode 0600). Your Ed25519 key and your TLS certificate are derived from it, so the same words always give the same fingerprints. It is created on first use unless --no-create is given.

--restore writes the identity of your 24 words, read from stdin (typed without echo on a terminal, or piped) or from --words-file: never from the command line, where other users and your shell history would see them. A file that already holds another identity is replaced only with --force.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --identity ./alice.json --show-mnemonic',
    '<%= config.bin %> <%= command.id %> --restore',
    '<%= config.bin %> <%= command.id %> --restore --words-file ./words.txt --force',
  ];
  static override flags = {
    identity: Flags.file({ summary: 'Identity file to use instead of identity.json in the config dir.' }),
    create: Flags.boolean({ summary: 'Create the identity if the file does not exist.', default: true, allowNo: true }),
    'show-mnemonic': Flags.boolean({ summary: 'Also print the 24 recovery words (keep them secret).' }),
    restore: Flags.boolean({ summary: 'Restore the identity from its 24 recovery words, read from stdin or --words-file.' }),
    'words-file': Flags.string({ summary: "Read the recovery words for --restore from this file ('-': stdin).", dependsOn: ['restore'] }),
    force: Flags.boolean({ summary: 'With --restore: replace an identity file that holds another identity.', dependsOn: ['restore'] }),
  };

  /** Extra arguments are refused here, not by oclif, whose error would repeat them: they may be the words. */
  static override strict = false;

  public async run(): Promise<IdentityReport> {
    const { flags, argv } = await this.parse(IdentityCommand);
    if (argv.length > 0) {
      throw new UsageError(`wzp identity takes no arguments (${argv.length} given, not repeated here in case they are recovery words)`, {
        suggestions: [
          'to restore an identity: wzp identity --restore, then type the words (or --words-file FILE)',
          'if you typed your recovery words on the command line, remove them from your shell history',
        ],
      });
    }
    const path = flags.identity ?? identityFile(this.configDir(flags));
    if (flags.restore) {
      return restoreIdentityFromWords({
        path,
        wordsFile: flags['words-file'],
        force: flags.force,
        revealMnemonic: flags['show-mnemonic'],
        prompt: (text) => process.stderr.write(text),
      });
    }
    return showIdentity({ path, create: flags.create, revealMnemonic: flags['show-mnemonic'] });
  }

  protected renderHuman(r: IdentityReport): string {
    const head =
      r.restored === undefined
        ? `${r.created ? 'created' : 'identity'} ${r.path}`
        : r.restored
          ? `restored ${r.path}${r.replaced ? ` (replaced the identity ${r.replaced})` : ''}`
          : `${r.path} already holds this identity: nothing changed`;
    const lines = [head, `fingerprint      ${r.fingerprint}`, `tls fingerprint  ${r.tlsFingerprint}`];
    if (r.mnemonic) lines.push(`recovery words   ${r.mnemonic}`);
    return lines.join('\n');
  }
}
