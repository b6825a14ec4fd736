/**
 * Without a sound card, PortAudio's initialisation makes ALSA (and JACK) print ~100 lines to
 * stderr per attempt; wzp drops them (core/audio/stdout-guard.ts quietNative) so the one
 * useful error is what the user reads. WZP_DEBUG=1 keeps them.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { makeHome, parseJsonDocument, runCli } from '../helpers/cli.js';

/** A sound card makes PortAudio quiet anyway: this checks the machine without one. */
function soundCardSkipReason(): string | undefined {
  const cards = existsSync('/proc/asound/cards') ? readFileSync('/proc/asound/cards', 'utf8') : '';
  return /^\s*\d+ \[/m.test(cards) ? 'this machine has a sound card' : undefined;
}

describe('no sound card: one useful error, not pages of ALSA', { skip: soundCardSkipReason() }, () => {
  test('call --mic says there is no input device, and nothing else', async () => {
    const home = makeHome('wzp-quiet-audio-');
    try {
      // HOME is a fresh directory: no ~/.asoundrc pointing at a sound server.
      const r = await runCli(['call', '127.0.0.1:9', '--room', 'r', '--mic'], home);
      assert.equal(r.code, 3, r.stderr);
      assert.doesNotMatch(r.stderr, /ALSA lib|PortAudio V|audio options|jack/i);
      assert.match(r.stderr, /^Error: cannot open audio input "default input": No default device/m);
      assert.ok(r.stderr.trim().split('\n').length <= 3, r.stderr);
      assert.equal(r.stdout, '');

      const json = await runCli(['call', '127.0.0.1:9', '--room', 'r', '--mic', '--json'], home);
      assert.equal(json.code, 3);
      assert.equal(parseJsonDocument(json).name, 'ConfigError');
      assert.equal(json.stderr, '');

      const debug = await runCli(['call', '127.0.0.1:9', '--room', 'r', '--mic'], { ...home, env: { ...home.env, WZP_DEBUG: '1' } });
      assert.match(debug.stderr, /ALSA lib/, 'WZP_DEBUG=1 keeps the native diagnostics');
    } finally {
      home.cleanup();
    }
  });

  test('call --list-devices says no devices were found, with no native noise', async () => {
    const home = makeHome('wzp-quiet-list-');
    try {
      const r = await runCli(['call', '--list-devices'], home);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^no audio devices found/);
      assert.equal(r.stderr, '');
    } finally {
      home.cleanup();
    }
  });
});
