/**
 * What the CLI contract suite (contract.integration.test.ts) needs to know about a command
 * beyond the oclif manifest: how to make it succeed, how to point it at an address, which of
 * its inputs are files. Every command in the manifest gets the generic checks (help, -h,
 * examples, unknown flag, missing required input) without an entry here; a command without an
 * entry fails one check that asks for its success case.
 *
 * Placeholders in arguments: {relay} and {fp} (a relay process on 127.0.0.1 and its
 * fingerprint), {tmp} (a directory of the case's own), {addr} (the address under test),
 * {file} (the file under test), {wav} (a valid WAV file).
 */

export interface AddressInput {
  /** The command's arguments with {addr} where the address goes; everything else valid. */
  args: string[];
  /** Port 0 is a valid value here (a listen address: any free port). */
  portZeroValid?: boolean;
  /**
   * Arguments that make an unreachable address fail fast (a short timeout); when given, the
   * suite also expects a closed loopback port to be a NetworkError (exit 4). Absent: the
   * command does not connect (or reports an unreachable server inside its result).
   */
  unreachable?: string[];
}

export interface FileInput {
  /** What the file is, for the case names. */
  what: string;
  /** The command's arguments with {file} where the path goes. */
  args: string[];
  /** An output file: only a path in a directory that does not exist is checked. */
  output?: boolean;
  /** Any content is valid (a secret's first line): a wrong-content file is not an error. */
  anyContent?: boolean;
  /** A missing file is created (an identity): a missing file is not an error. */
  createdIfMissing?: boolean;
}

export interface CommandContract {
  /** Runs that must succeed (status 0), each the arguments after the command's words. */
  success: string[][];
  /** Addresses the command takes (HOST:PORT arguments or flags). */
  addresses?: AddressInput[];
  /** Files the command reads or writes. */
  files?: FileInput[];
  /** Other bad values that must be usage errors (exit 2). */
  usage?: string[][];
  /**
   * Runs in a private network namespace next to a fake NAT-PMP gateway on 127.0.0.1:5351
   * (test/helpers/isolated-gateway.ts): commands that talk to "the gateway" and multicast.
   */
  isolated?: boolean;
  /** A command that runs until stopped: SIGINT once this appears on stderr (a clean stop, exit 0). */
  stopWhen?: RegExp;
  /**
   * Success cases that need someone at the other end: this process (its own home and identity,
   * its fingerprint as {partnerFp} in the case's arguments) is started first and the case runs
   * once `readyWhen` appears on its stderr; it is killed after the case.
   */
  partner?: { args: string[]; readyWhen: RegExp };
}

const RELAY = ['--relay-fingerprint', '{fp}'];
const SHORT = ['--timeout', '1'];
/** A fingerprint nobody in these cases has. */
const OTHER_FP = 'ab12:'.repeat(15) + 'ab12';

export const CONTRACTS: Record<string, CommandContract> = {
  call: {
    success: [['{relay}', '--room', 'contract', '--tone', '440', '--duration', '1', '--no-playback', ...RELAY]],
    addresses: [{ args: ['{addr}', '--room', 'contract', '--tone', '440', '--duration', '1', '--no-playback'], unreachable: SHORT }],
    files: [
      { what: '--file (WAV to send)', args: ['{relay}', '--room', 'contract', '--file', '{file}', '--duration', '1', '--no-playback', ...RELAY] },
      { what: '--record', output: true, args: ['{relay}', '--room', 'contract', '--tone', '440', '--duration', '1', '--no-playback', '--record', '{file}', ...RELAY] },
      { what: '--report', output: true, args: ['{relay}', '--room', 'contract', '--tone', '440', '--duration', '1', '--no-playback', '--report', '{file}', ...RELAY] },
      { what: '--room-secret-file', anyContent: true, args: ['{relay}', '--room', 'contract', '--tone', '440', '--duration', '1', '--no-playback', '--room-secret-file', '{file}', ...RELAY] },
    ],
    usage: [
      ['{relay}', '--to', OTHER_FP, '--room', 'contract', ...RELAY],
      ['{relay}', '--to', 'not-a-fingerprint', ...RELAY],
      ['{relay}', '--room', 'contract', '--relay-only', ...RELAY],
      ['{relay}', '--room', 'contract', '--no-hard-nat', ...RELAY],
      ['{relay}', '--to', OTHER_FP, '--ring-timeout', '0', ...RELAY],
    ],
  },
  'direct-test': {
    success: [['{relay}', '--to', '{partnerFp}', '--test-for', '5', ...RELAY]],
    partner: { args: ['direct-test', '{relay}', '--wait', '--wait-for', '30', ...RELAY], readyWhen: /wzp direct-test: registered as/ },
    addresses: [{ args: ['{addr}', '--wait', '--wait-for', '1'], unreachable: SHORT }],
    files: [{ what: '--report', output: true, args: ['{relay}', '--to', OTHER_FP, '--report', '{file}', ...RELAY] }],
    usage: [
      ['{relay}', ...RELAY],
      ['{relay}', '--to', OTHER_FP, '--wait', ...RELAY],
      ['{relay}', '--to', 'not-a-fingerprint', ...RELAY],
      ['{relay}', '--to', OTHER_FP, '--accept-from', OTHER_FP, ...RELAY],
      ['{relay}', '--wait', '--test-for', '0.5', ...RELAY],
    ],
  },
  'echo-test': {
    success: [['--duration', '1'], ['{relay}', '--duration', '1', ...RELAY]],
    addresses: [{ args: ['{addr}', '--duration', '1'], unreachable: SHORT }],
  },
  extensions: { success: [[], ['--kind', 'codec']] },
  identity: {
    success: [[]],
    files: [{ what: '--identity', args: ['--identity', '{file}', '--no-create'] }],
  },
  netcheck: {
    success: [['--relay', '{relay}', '--no-port-mapping']],
    addresses: [
      { args: ['--relay', '{addr}', '--no-port-mapping'] },
      { args: ['--stun', '{addr}', '--no-port-mapping'] },
    ],
    usage: [['--gateway', 'notanip', '--relay', '{relay}']],
  },
  listen: {
    success: [['{relay}', ...RELAY], ['{relay}', '--accept-from', OTHER_FP, '--relay-only', ...RELAY], ['{relay}', '--no-hard-nat', ...RELAY]],
    stopWhen: /wzp listen: registered as/,
    addresses: [{ args: ['{addr}'], unreachable: SHORT }],
    usage: [['{relay}', '--accept-from', 'not-a-fingerprint', ...RELAY], ['{relay}', '--record', '{tmp}/x.wav', ...RELAY]],
  },
  'pins:forget': {
    success: [['127.0.0.1:4433']],
    addresses: [{ args: ['{addr}'] }],
  },
  'pins:list': { success: [[]] },
  'portmap:add': {
    isolated: true,
    success: [['--internal-port', '40000', '--protocol', 'natpmp', '--gateway', '127.0.0.1', '--lifetime', '60']],
    usage: [
      ['--internal-port', '0', '--protocol', 'natpmp', '--gateway', '127.0.0.1'],
      ['--internal-port', '40000', '--protocol', 'natpmp', '--gateway', 'notanip'],
    ],
  },
  'portmap:delete': {
    isolated: true,
    success: [['--internal-port', '40000', '--protocol', 'natpmp', '--gateway', '127.0.0.1']],
    files: [{ what: '--mapping @FILE', args: ['--mapping', '@{file}'] }],
  },
  'portmap:list': { isolated: true, success: [['--gateway', '127.0.0.1']] },
  'portmap:probe': { isolated: true, success: [['--gateway', '127.0.0.1']], usage: [['--gateway', 'notanip']] },
  'predict-ports': {
    success: [['--stun', '{relay}', '--count', '3']],
    addresses: [{ args: ['--stun', '{addr}', '--count', '3'] }],
  },
  record: {
    success: [['{relay}', '{tmp}/heard.wav', '--room', 'contract', '--duration', '1', ...RELAY]],
    addresses: [{ args: ['{addr}', '{tmp}/heard.wav', '--room', 'contract', '--duration', '1'], unreachable: SHORT }],
    files: [{ what: 'FILE (WAV to write)', output: true, args: ['{relay}', '{file}', '--room', 'contract', '--duration', '1', ...RELAY] }],
  },
  reflect: {
    success: [['{relay}', ...RELAY]],
    addresses: [{ args: ['{addr}'], unreachable: ['--timeout', '0.8'] }],
  },
  relay: {
    success: [['--listen', '127.0.0.1:0']],
    stopWhen: /listening on/,
    addresses: [{ args: ['--listen', '{addr}'], portZeroValid: true }],
    files: [
      { what: '--identity', createdIfMissing: true, args: ['--listen', '127.0.0.1:0', '--identity', '{file}'] },
      { what: '--config', createdIfMissing: true, args: ['--listen', '127.0.0.1:0', '--config', '{file}'] },
    ],
  },
  sweep: {
    success: [['--loss', '0,5', '--tier', 'GOOD', '--duration', '1'], ['--loss', '0', '--tier', 'GOOD', '--duration', '1', '--input', '{wav}', '--plot', '{tmp}/chart.svg']],
    files: [
      { what: '--input (WAV)', args: ['--loss', '0', '--tier', 'GOOD', '--duration', '1', '--input', '{file}'] },
      { what: '--plot', output: true, args: ['--loss', '0', '--tier', 'GOOD', '--duration', '1', '--plot', '{file}'] },
    ],
  },
};
