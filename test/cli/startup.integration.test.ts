/**
 * Start-up work that `wzp call` no longer does, or does side by side, and what must still
 * hold: the raptorq scheme registers without its wasm and loads it on first use, Opus loads
 * its prebuilt binary without node-pre-gyp, the call report says when the join went out, a
 * set-up error does not wait for the relay connection started alongside it, and help does
 * not trip over the command prefetch in bin/run.js. Traffic stays on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createRaptorqFecScheme, loadRaptorqRuntimeSync } from '../../src/plugins/fec-raptorq/index.js';
import { parseJsonDocument, relayProcessForSuite, runCli } from '../helpers/cli.js';

const OPUS_PLUGIN = fileURLToPath(new URL('../../src/plugins/codec-opus/index.js', import.meta.url));

describe('lazy built-in extensions', () => {
  test('raptorq registers without loading its runtime and loads it once, on first use', () => {
    let loads = 0;
    const scheme = createRaptorqFecScheme(() => {
      loads++;
      return loadRaptorqRuntimeSync();
    });
    assert.equal(scheme.name, 'raptorq');
    assert.equal(scheme.schemeId, 1);
    assert.equal(loads, 0, 'registration alone loads nothing');
    assert.deepEqual(scheme.availability(), { available: true });
    const { encoder, decoder } = scheme.create({ k: 4, r: 2, maxFrameBytes: 100 });
    const frames = [1, 2, 3, 4].map((n) => new Uint8Array(40).fill(n));
    const packets = [...frames.map((data, index) => ({ index, repair: false, data })), ...encoder.encode(frames)];
    const received = packets.filter((p) => p.index !== 1 && p.index !== 2);
    assert.deepEqual(decoder.decode(received, 4), frames, 'two lost frames come back from the repairs');
    assert.ok(scheme.guaranteedRecoverable({ k: 4, r: 2, maxFrameBytes: 100 }) >= 1);
    assert.equal(loads, 1, 'the runtime loads once');
  });

  test('a raptorq runtime that fails on first use makes the scheme unavailable, not the CLI', () => {
    const scheme = createRaptorqFecScheme(() => {
      throw new Error('raptorq_bg.wasm: ENOENT');
    });
    const availability = scheme.availability();
    assert.equal(availability.available, false);
    assert.match(availability.available ? '' : availability.reason, /ENOENT/);
    assert.throws(() => scheme.create({ k: 5, r: 2, maxFrameBytes: 100 }), { name: 'PluginError' });
  });

  test('opus loads its prebuilt binary without node-pre-gyp and encodes', () => {
    const script = `
      const { default: hook } = await import(${JSON.stringify(OPUS_PLUGIN)});
      const [opus] = await hook();
      const codec = opus.create({ frameMs: 20 });
      const packet = codec.encode(new Int16Array(960).map((_, i) => Math.round(8000 * Math.sin(i / 10))));
      const { createRequire } = await import('node:module');
      const loaded = Object.keys(createRequire(import.meta.url).cache);
      console.log(JSON.stringify({
        available: opus.availability().available,
        packetBytes: packet.length,
        decodedSamples: codec.decode(packet).length,
        nodePreGyp: loaded.some((p) => p.includes('node-pre-gyp')),
      }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { available: boolean; packetBytes: number; decodedSamples: number; nodePreGyp: boolean };
    assert.equal(out.available, true);
    assert.ok(out.packetBytes > 0);
    assert.equal(out.decodedSamples, 960);
    assert.equal(out.nodePreGyp, false, 'the prebuilt binary was required directly');
  });
});

describe('wzp call start-up', () => {
  const suite = relayProcessForSuite('wzp-startup-');

  test('the call report says when the join went out, after process start and before the call ends', async () => {
    const r = await runCli(
      ['call', suite.relay.address, '--room', 'startup', '--tone', '440', '--duration', '1', '--relay-fingerprint', suite.relay.fingerprint, '--json'],
      suite.home,
    );
    assert.equal(r.code, 0, r.stderr);
    const result = parseJsonDocument(r).result as { joinSentSinceStartMs: number; setupMs: number; durationMs: number; endedBy: string };
    assert.equal(result.endedBy, 'duration');
    assert.equal(typeof result.joinSentSinceStartMs, 'number');
    assert.ok(result.joinSentSinceStartMs > 0 && result.joinSentSinceStartMs < 30_000, String(result.joinSentSinceStartMs));
  });

  test('a set-up error is reported at once, without waiting for the relay connection started alongside', async () => {
    const started = performance.now();
    // Nothing answers on 127.0.0.1:9: the connection attempt alone would take its 5 s timeout.
    const r = await runCli(['call', '127.0.0.1:9', '--room', 'startup', '--tone', '30000', '--json'], suite.home);
    const elapsed = performance.now() - started;
    const doc = parseJsonDocument(r);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(doc.name, 'UsageError');
    assert.match(String(doc.message), /--tone 30000/);
    assert.ok(elapsed < 4_500, `took ${Math.round(elapsed)} ms`);
  });

  test('help works for the commands whose start-up is timed', async () => {
    for (const id of ['call', 'record', 'echo-test']) {
      const r = await runCli([id, '--help'], suite.home);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /USAGE/);
    }
  });
});
