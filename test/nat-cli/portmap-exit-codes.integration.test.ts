/**
 * `wzp portmap` exit codes as docs/exit-codes.md lists them: a --mapping @FILE that cannot be
 * read is a ConfigError (3, it was a usage error, 2), and a --gateway that is not an IPv4
 * address is a usage error (2) naming the value on every subcommand (`list` reported it as a
 * failed gateway table and exited 0). Nothing here reaches a network: the checks come first.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type CliHome, makeHome, parseJsonDocument, runCli } from '../helpers/cli.js';

describe('wzp portmap: exit codes and envelopes', () => {
  let home: CliHome;
  before(() => {
    home = makeHome('wzp-portmap-exit-');
  });
  after(() => home.cleanup());

  const expectError = async (args: string[], status: number, name: string, message: RegExp) => {
    const r = await runCli([...args, '--json'], home);
    const doc = parseJsonDocument(r);
    assert.equal(r.code, status, `${args.join(' ')}: ${r.stdout}`);
    assert.equal(doc.status, status, 'the envelope says the exit code');
    assert.equal(doc.name, name);
    assert.match(String(doc.message), message);
  };

  it('--mapping @FILE that is missing or unreadable: ConfigError, exit 3', async () => {
    await expectError(['portmap', 'delete', '--mapping', `@${join(home.dir, 'missing.json')}`], 3, 'ConfigError', /cannot read .*missing\.json: ENOENT/);
    const directory = join(home.dir, 'a-directory');
    mkdirSync(directory);
    await expectError(['portmap', 'delete', '--mapping', `@${directory}`], 3, 'ConfigError', /cannot read .*a-directory/);
  });

  it('--gateway notanip: a usage error naming the value, on every subcommand', async () => {
    for (const args of [['portmap', 'list'], ['portmap', 'probe'], ['portmap', 'add', '--internal-port', '4433'], ['portmap', 'delete', '--protocol', 'upnp', '--external-port', '4433']]) {
      await expectError([...args, '--gateway', 'notanip'], 2, 'UsageError', /--gateway "notanip" is not an IPv4 address/);
    }
  });
});
