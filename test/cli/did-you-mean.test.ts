/** Which command a mistyped one meant (src/hooks/command-not-found.ts). */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { closestCommand, editDistance } from '../../src/hooks/command-not-found.js';

const KNOWN = [
  'call', 'echo-test', 'extensions', 'identity', 'netcheck', 'pins', 'pins:forget', 'pins:list', 'portmap', 'portmap:add',
  'portmap:delete', 'portmap:list', 'portmap:probe', 'predict-ports', 'record', 'reflect', 'relay', 'sweep', 'plugins', 'plugins:link', 'help',
];

describe('did you mean', () => {
  test('edit distance counts an adjacent swap as one edit', () => {
    assert.equal(editDistance('netchek', 'netcheck'), 1);
    assert.equal(editDistance('echo-tset', 'echo-test'), 1);
    assert.equal(editDistance('', 'abc'), 3);
    assert.equal(editDistance('relay', 'relay'), 0);
  });

  const cases: [string[], string | undefined, string[]][] = [
    [['netchek'], 'netcheck', []],
    [['netchek', '--json'], 'netcheck', ['--json']],
    [['pin', 'list'], 'pins:list', []],
    [['pin'], 'pins', []],
    [['echo-tset', '127.0.0.1:4433', '--duration', '1'], 'echo-test', ['127.0.0.1:4433', '--duration', '1']],
    [['ident'], 'identity', []],
    [['relays'], 'relay', []],
    [['portmap', 'prob', '--gateway', '10.0.0.1'], 'portmap:probe', ['--gateway', '10.0.0.1']],
    [['xyzzy'], undefined, []],
    [['c'], undefined, []],
  ];
  for (const [typed, id, rest] of cases) {
    test(`${typed.join(' ')} -> ${id ?? 'nothing'}`, () => {
      const match = closestCommand(typed, KNOWN);
      assert.equal(match?.id, id);
      if (id !== undefined) assert.deepEqual(match?.rest, rest);
    });
  }
});
