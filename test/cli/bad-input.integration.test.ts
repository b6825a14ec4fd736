/**
 * Bad input to the commands that dial a relay or read local files: each is one clear error
 * with the exit code docs/exit-codes.md gives it, naming the value, never a stack trace.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeHome, parseJsonDocument, runCli, runCliIsolated, type CliHome, type CliResult } from '../helpers/cli.js';

/** One JSON error document with this status and error name, and nothing that looks like a stack. */
function assertErrorDocument(r: CliResult, status: number, name: string): { message: string; suggestions: string[] } {
  const doc = parseJsonDocument(r) as unknown as { status: number; name: string; message: string; suggestions: string[] };
  assert.equal(r.code, status, `${r.stdout}\n${r.stderr}`);
  assert.equal(doc.status, status);
  assert.equal(doc.name, name, doc.message);
  assert.doesNotMatch(`${r.stdout}${r.stderr}`, /\n\s+at .*:\d+:\d+/, 'no stack trace');
  return doc;
}

/** A UDP socket bound on loopback that never answers: a relay that is not there. */
async function silentPort(): Promise<{ socket: Socket; port: number }> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  return { socket, port: socket.address().port };
}

describe('bad input to the commands that dial or read files', () => {
  let home: CliHome;
  let silent: { socket: Socket; port: number };
  before(async () => {
    home = makeHome('wzp-bad-input-');
    silent = await silentPort();
  });
  after(() => {
    silent.socket.close();
    home.cleanup();
  });

  test('port 0 is a usage error naming the target, for every command that dials', async () => {
    const commands = [
      ['echo-test', '127.0.0.1:0', '--duration', '1'],
      ['call', '127.0.0.1:0', '--room', 'r', '--duration', '1'],
      ['record', '127.0.0.1:0', join(home.dir, 'out.wav'), '--room', 'r', '--duration', '1'],
    ];
    for (const args of commands) {
      const doc = assertErrorDocument(await runCli([...args, '--json'], home), 2, 'UsageError');
      assert.match(doc.message, /"127\.0\.0\.1:0" has port 0/, args[0]);
    }
  });

  test('1:1 calls: a bad --stun or --gateway is a usage error naming the value, before any relay is dialled', async () => {
    const fp = Array.from({ length: 16 }, () => 'ab12').join(':');
    const relay = `127.0.0.1:${silent.port}`;
    for (const [args, value] of [
      [['call', relay, '--to', fp, '--stun', 'stun.example.net'], /stun\.example\.net/],
      [['listen', relay, '--stun', '127.0.0.1:0'], /127\.0\.0\.1:0/],
      [['call', relay, '--to', fp, '--gateway', 'notanip'], /notanip/],
      [['listen', relay, '--gateway', 'notanip'], /notanip/],
    ] as const) {
      // The relay is a silent port: a command that dialled it first would wait out its timeout.
      const doc = assertErrorDocument(await runCli([...args, '--timeout', '30', '--json'], home), 2, 'UsageError');
      assert.match(doc.message, value, args.join(' '));
    }
  });

  test('a local file that is not a WAV is a ConfigError (exit 3) naming it, for call --file and sweep --input', async () => {
    const notWav = join(home.dir, 'passwd');
    writeFileSync(notWav, 'root:x:0:0:root:/root:/bin/bash\n');
    for (const args of [
      ['call', `127.0.0.1:${silent.port}`, '--room', 'r', '--file', notWav],
      ['sweep', '--input', notWav, '--duration', '1', '--tier', 'GOOD', '--loss', '0'],
    ]) {
      const doc = assertErrorDocument(await runCli([...args, '--json'], home), 3, 'ConfigError');
      assert.ok(doc.message.includes(notWav), doc.message);
      assert.match(doc.message, /not a WAV file/);
    }
  });

  test('sweep rejects impairments that are not numbers in range, naming the value', async () => {
    const cases: [string[], RegExp][] = [
      [['--jitter', '-3'], /--jitter -3/],
      [['--loss', '10,,20'], /--loss "10,,20" has an empty item/],
      [['--loss', 'abc'], /"abc" is not a number/],
      [['--loss', '100'], /--loss 100: a loss rate is a percentage 0-99/],
    ];
    for (const [flags, expected] of cases) {
      const doc = assertErrorDocument(await runCli(['sweep', '--duration', '1', ...flags, '--json'], home), 2, 'UsageError');
      assert.match(doc.message, expected);
      assert.doesNotMatch(doc.message, /NaN/);
    }
  });

  test('a relay name that does not resolve says so', async () => {
    // In a namespace of its own: the lookup must not leave the machine.
    const doc = assertErrorDocument(await runCliIsolated(['echo-test', 'no-such-relay.invalid:4433', '--duration', '1', '--json'], home), 4, 'NetworkError');
    assert.match(doc.message, /cannot connect to no-such-relay\.invalid:4433: the name no-such-relay\.invalid does not resolve/);
  });

  test('--timeout bounds the wait for a relay that does not answer; a bad value is a usage error', async () => {
    const started = performance.now();
    const doc = assertErrorDocument(await runCli(['echo-test', `127.0.0.1:${silent.port}`, '--timeout', '0.5', '--json'], home), 4, 'NetworkError');
    const elapsed = performance.now() - started;
    assert.match(doc.message, /did not answer within 500 ms/);
    assert.ok(elapsed < 4000, `took ${elapsed} ms`);
    for (const command of [['echo-test'], ['call', '--room', 'r'], ['record', join(home.dir, 'x.wav'), '--room', 'r']]) {
      const [name, ...rest] = command;
      const r = await runCli([name, `127.0.0.1:${silent.port}`, ...rest, '--timeout', 'soon', '--json'], home);
      const bad = assertErrorDocument(r, 2, 'UsageError');
      assert.match(bad.message, /--timeout soon/, name);
    }
  });

  test('echo-test --codec codec2 uses the codec\'s own frame size; an unsupported --frame-ms is refused', async () => {
    const r = await runCli(['echo-test', '--codec', 'codec2', '--duration', '1', '--json'], home);
    const doc = parseJsonDocument(r) as unknown as { status: number; result: { frameMs: number; codec: { name: string }; packetsReceived: number } };
    assert.equal(r.code, 0, r.stderr);
    assert.equal(doc.result.codec.name, 'codec2');
    assert.equal(doc.result.frameMs, 40);
    assert.ok(doc.result.packetsReceived > 0);
    const bad = assertErrorDocument(await runCli(['echo-test', '--codec', 'codec2', '--frame-ms', '20', '--duration', '1', '--json'], home), 2, 'UsageError');
    assert.match(bad.message, /codec2 does not support 20 ms frames/);
  });

  test('relay --listen: an address not on this machine, and a port in use, each say what is wrong', async () => {
    const elsewhere = assertErrorDocument(await runCli(['relay', '--listen', '192.0.2.1:4433', '--json'], home), 4, 'NetworkError');
    assert.match(elsewhere.message, /192\.0\.2\.1 is not an address of this machine/);
    assert.ok(!elsewhere.suggestions.some((s) => /another process/.test(s)), elsewhere.suggestions.join('\n'));

    const taken = assertErrorDocument(await runCli(['relay', '--listen', `127.0.0.1:${silent.port}`, '--json'], home), 4, 'NetworkError');
    assert.match(taken.message, /another process is using that port/);
  });

  test('relay --metrics: a value that is not HOST:PORT, and a port in use, each name the flag', async () => {
    const bad = assertErrorDocument(await runCli(['relay', '--listen', '127.0.0.1:0', '--metrics', 'nonsense', '--json'], home), 2, 'UsageError');
    assert.match(bad.message, /^--metrics "nonsense" is not HOST:PORT/);
    const tcp = createServer();
    await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
    const port = (tcp.address() as { port: number }).port;
    try {
      const taken = assertErrorDocument(await runCli(['relay', '--listen', '127.0.0.1:0', '--metrics', `127.0.0.1:${port}`, '--json'], home), 4, 'NetworkError');
      assert.equal(taken.message, `cannot serve metrics on --metrics 127.0.0.1:${port}: another process is using that port (EADDRINUSE)`);
    } finally {
      tcp.close();
    }
  });

  test('relay --peer, --trusted, --global-room: bad values are usage errors naming them, before the relay starts', async () => {
    const fp = '0123:4567:89ab:cdef:0123:4567:89ab:cdef:0123:4567:89ab:cdef:0123:4567:89ab:cdef';
    const cases: [string[], RegExp][] = [
      [['--peer', '127.0.0.1:4433'], /--peer "127\.0\.0\.1:4433" is not HOST:PORT=FINGERPRINT/],
      [['--peer', '127.0.0.1:0=' + fp], /peer 127\.0\.0\.1:0: .*port 0/],
      [['--peer', '127.0.0.1:4433=abcd'], /peer 127\.0\.0\.1:4433: "abcd" is not a fingerprint/],
      [['--trusted', 'xyz'], /trusted relay: "xyz" is not a fingerprint/],
      [['--global-room', 'id:123'], /global room id:123: the id must be 32 hex digits/],
    ];
    for (const [args, message] of cases) {
      const doc = assertErrorDocument(await runCli(['relay', '--listen', '127.0.0.1:0', ...args, '--json'], home), 2, 'UsageError');
      assert.match(doc.message, message, args.join(' '));
    }
  });
});
