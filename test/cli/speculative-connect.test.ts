/**
 * The CLI starts the relay connection of `wzp call` / `wzp record` before oclif has parsed the
 * command line (src/services/relay-connect.ts). It must read the line as oclif will, or
 * give up; and the command must end up with one connection, not two.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { scanCommandLine, type FlagSpec } from '../../src/services/relay-connect.js';
import { parseJsonDocument, relayProcessForSuite, runCli, startRelayProcess } from '../helpers/cli.js';

const FLAGS: Record<string, FlagSpec> = {
  room: { type: 'option' },
  tone: { type: 'option' },
  alias: { type: 'option', char: 'a' },
  'relay-fingerprint': { type: 'option' },
  playback: { type: 'boolean', allowNo: true },
  mic: { type: 'boolean' },
  json: { type: 'boolean' },
};

describe('reading a command line as oclif does', () => {
  test('positionals, option values, --flag=value, short flags, --no-flags and --', () => {
    const line = scanCommandLine(
      ['--room', 'r1', 'relay:4433', '--no-playback', '-a', 'bob', '--relay-fingerprint=ab:cd', '--mic', '--', '--not-a-flag'],
      FLAGS,
    );
    assert.deepEqual(line?.positionals, ['relay:4433', '--not-a-flag']);
    assert.equal(line?.options.get('room'), 'r1');
    assert.equal(line?.options.get('alias'), 'bob');
    assert.equal(line?.options.get('relay-fingerprint'), 'ab:cd');
  });

  test('anything it does not understand makes it give up', () => {
    assert.equal(scanCommandLine(['relay:1', '--unknown'], FLAGS), undefined);
    assert.equal(scanCommandLine(['relay:1', '--room'], FLAGS), undefined, 'an option without its value');
    assert.equal(scanCommandLine(['relay:1', '--mic=yes'], FLAGS), undefined, 'a value given to a boolean');
    assert.equal(scanCommandLine(['relay:1', '-abc'], FLAGS), undefined, 'grouped short flags');
    assert.equal(scanCommandLine(['relay:1', '--no-mic'], FLAGS), undefined, '--no- of a flag that does not allow it');
  });
});

describe('speculative relay connection', () => {
  const suite = relayProcessForSuite('wzp-spec-');

  test('a call uses the connection started early: the relay sees one connection per call', async () => {
    for (const extra of [[], ['--alias', 'carol'], ['--no-playback']]) {
      const r = await runCli(
        ['call', suite.relay.address, '--room', 'spec', '--tone', '440', '--duration', '1', '--relay-fingerprint', suite.relay.fingerprint, '--json', ...extra],
        suite.home,
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal((parseJsonDocument(r).result as { endedBy: string }).endedBy, 'duration');
    }
    const stopped = await suite.relay.stop('SIGTERM');
    const m = /(\d+) connections/.exec(stopped.stdout + stopped.stderr);
    assert.ok(m, stopped.stdout + stopped.stderr);
    assert.equal(Number(m[1]), 3, 'three calls, three connections');
    suite.relay = await startRelayProcess(['--listen', '127.0.0.1:0'], suite.relayHome);
  });

  test('a wrong pin is refused exactly as without the speculation', async () => {
    const wrong = suite.relay.fingerprint.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    const r = await runCli(['call', suite.relay.address, '--room', 'spec', '--duration', '1', '--relay-fingerprint', wrong, '--json'], suite.home);
    assert.notEqual(r.code, 0);
    assert.equal(parseJsonDocument(r).name, 'FingerprintMismatchError');
  });
});
