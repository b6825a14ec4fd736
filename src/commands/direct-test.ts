import * as Args from '@oclif/core/args';
import * as Flags from '@oclif/core/flags';
import { aliasProblem } from '../../core/crypto/sender-keys.js';
import { UsageError } from '../../core/errors.js';
import { WzpCommand } from '../base-command.js';
import { directPathFlags, secondsFlag, timeoutFlag, timeoutMs, tokenFlag } from '../connect-flags.js';
import { directTestSummary } from '../services/direct-call-text.js';
import { directTest, type DirectTestReport } from '../services/direct-test.js';
import { pinFile } from '../services/paths.js';
import { relayPinnedLine } from '../services/relay-connect.js';
import { readFingerprintArg, resolveAllowList } from '../services/room-admission.js';

export default class DirectTest extends WzpCommand<DirectTestReport> {
  static override summary = 'Find out whether a direct path works between your network and a colleague\'s: no call, no audio, a report and a verdict.';
  static override description = `Two people at two sites: one runs \`wzp direct-test RELAY --wait\`, the other \`wzp direct-test RELAY --to THEIR-FINGERPRINT\`, on the same relay. Both register as their identities; the offer and answer are signed end to end like a 1:1 call's and carry both sides' candidates and NAT profiles (measured on the test's own socket). Then only the connectivity checks run, and the hard-NAT strategies of the installed plugins when the checks alone find no pair (both sides consent unless --no-hard-nat). The test ends when a pair has answered for 2 s, or after --test-for seconds.

Both sides print the same kind of report: the two NAT profiles, the candidates, every pair checked and its outcome, each strategy tried with its packets and sockets against its budget, and a plain verdict ("direct calls work between these two networks", or "relayed" and why). The JSON report (--json, --report) is what a support team asks for.

--wait takes the first test offered (only from --accept-from identities, if given) and declines calls; \`wzp listen\` declines tests. Exit 0 whatever the verdict: a relayed verdict is a finding, not a failure.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> relay.example.com:4433 --wait',
    '<%= config.bin %> <%= command.id %> relay.example.com:4433 --to 1a2b:3c4d:...:7e8f --json > direct-test.json',
    '<%= config.bin %> <%= command.id %> relay.example.com:4433 --wait --accept-from @colleague.fp --stun stun.example.net:3478',
  ];
  static override args = { relay: Args.string({ description: 'Relay HOST:PORT.', required: true }) };
  static override flags = {
    to: Flags.string({ summary: 'Test with this identity (its full fingerprint, or @FILE holding it); it must be running `wzp direct-test RELAY --wait`.', exclusive: ['wait'] }),
    wait: Flags.boolean({ summary: 'Wait for a test offered by someone else (--to on their side).', exclusive: ['to'] }),
    'accept-from': Flags.string({
      summary: 'With --wait: take tests only from this identity (repeatable), or @FILE with one per line.',
      multiple: true,
      multipleNonGreedy: true,
      dependsOn: ['wait'],
    }),
    'wait-for': secondsFlag({ summary: 'Seconds to wait for the other side: for an answer (--to) or for an offer (--wait).', default: 60, min: 1, max: 3600, name: 'wait-for' }),
    'test-for': secondsFlag({ summary: 'Seconds the test tries at most (checks, then the hard-NAT strategies).', default: 20, min: 2, max: 120, name: 'test-for' }),
    ...directPathFlags,
    alias: Flags.string({ summary: 'Name shown to the relay (signed: up to 64 characters, no control characters).' }),
    identity: Flags.file({ summary: 'Identity file to use instead of the one in the config dir.' }),
    'relay-fingerprint': Flags.string({ summary: 'Trust only this relay certificate fingerprint.' }),
    token: tokenFlag,
    report: Flags.string({ summary: 'Also write the JSON report to this file (checked before the test starts, written atomically at the end).' }),
    timeout: timeoutFlag,
  };

  public async run(): Promise<DirectTestReport> {
    const { args, flags } = await this.parse(DirectTest);
    if (flags.to === undefined && !flags.wait) throw new UsageError('give --to FINGERPRINT (you offer the test) or --wait (the other side offers it)');
    const aliasTrouble = flags.alias === undefined ? undefined : aliasProblem(flags.alias);
    if (aliasTrouble) throw new UsageError(`--alias: ${aliasTrouble}`);
    const to = flags.to === undefined ? undefined : await readFingerprintArg(flags.to, '--to');
    const acceptFrom = await resolveAllowList(flags['accept-from'], '--accept-from');
    return directTest({
      relay: args.relay,
      ...(to === undefined ? {} : { to }),
      ...(acceptFrom === undefined ? {} : { acceptFrom }),
      waitMs: timeoutMs(flags['wait-for']),
      testMs: timeoutMs(flags['test-for']),
      portMapping: flags['port-mapping'],
      gateway: flags.gateway,
      stun: flags.stun,
      hardNat: flags['hard-nat'],
      configDir: this.configDir(flags),
      identityPath: flags.identity,
      relayFingerprint: flags['relay-fingerprint'],
      token: flags.token,
      timeoutMs: timeoutMs(flags.timeout),
      alias: flags.alias,
      reportPath: flags.report,
      registries: this.registries,
      signal: this.abortSignal,
      onProgress: (line) => this.progress(line),
      onConnected: (c) => {
        const pinned = relayPinnedLine(c, pinFile(this.configDir(flags)));
        if (pinned) this.progress(pinned);
      },
      onRegistered: ({ fingerprint, relay }) => {
        // One parseable line on stderr, even with --json, so the other side's script knows it can offer now.
        process.stderr.write(`wzp direct-test: registered as ${fingerprint} on ${relay}\n`);
      },
      meta: (schemaVersion) => this.reportMeta(schemaVersion, flags, args),
    });
  }

  protected renderHuman(r: DirectTestReport): string {
    return directTestSummary(r);
  }
}
