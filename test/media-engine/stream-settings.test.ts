import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tierStreamSettings } from '../../core/media/stream-settings.js';
import { QualityTier } from '../../core/wire/media-header.js';
import { createRegistries } from '../../core/registry.js';
import { codec2Codec } from '../../src/plugins/codec-codec2/index.js';
import { opusCodec } from '../../src/plugins/codec-opus/index.js';
import { pcm16Codec } from '../../src/plugins/codec-pcm/index.js';
import { noneFecScheme } from '../../src/plugins/fec-none/index.js';
import { rsFecScheme } from '../../src/plugins/fec-rs/index.js';
import { xorFecScheme } from '../../src/plugins/fec-xor/index.js';

function registries() {
  const r = createRegistries();
  r.codecs.register(opusCodec, 'test');
  r.codecs.register(codec2Codec, 'test');
  r.codecs.register(pcm16Codec, 'test');
  for (const f of [noneFecScheme, rsFecScheme, xorFecScheme]) r.fec.register(f, 'test');
  return r;
}

test("each tier's own settings: codec, frame, bitrate, FEC", () => {
  const r = registries();
  const good = tierStreamSettings('GOOD', r);
  assert.deepEqual(
    { tier: good.tier, codec: good.codec.name, frameMs: good.frameMs, bitrate: good.bitrate, fec: good.fec.name, k: good.k, r: good.r, depth: good.depth },
    { tier: QualityTier.GOOD, codec: 'opus', frameMs: 20, bitrate: 24_000, fec: 'rs', k: 4, r: 3, depth: 1 },
  );
  const degraded = tierStreamSettings('DEGRADED', r);
  assert.equal(degraded.frameMs, 40);
  assert.equal(degraded.bitrate, 6_000);
  const catastrophic = tierStreamSettings('CATASTROPHIC', r);
  const usable = codec2Codec.availability().available;
  assert.equal(catastrophic.codec.name, usable ? 'codec2' : 'opus');
  assert.equal(catastrophic.k, usable ? 5 : 3);
});

test('overrides: another FEC keeps K/R/depth, none is 1+0, another codec falls back to its own frame size', () => {
  const r = registries();
  const xor = tierStreamSettings('GOOD', r, { fec: 'xor' });
  assert.equal(xor.fec.name, 'xor');
  assert.deepEqual([xor.k, xor.r, xor.depth], [4, 3, 1]);
  const none = tierStreamSettings('GOOD', r, { fec: 'none', k: 8, r: 2, depth: 3 });
  assert.deepEqual([none.k, none.r, none.depth], [1, 0, 3]);
  const shaped = tierStreamSettings('DEGRADED', r, { k: 3, r: 1, depth: 2 });
  assert.deepEqual([shaped.k, shaped.r, shaped.depth], [3, 1, 2]);
  if (codec2Codec.availability().available) {
    const c2 = tierStreamSettings('GOOD', r, { codec: 'codec2' });
    assert.equal(c2.codec.name, 'codec2');
    assert.ok(codec2Codec.frameDurationsMs.includes(c2.frameMs), String(c2.frameMs));
  }
  assert.throws(() => tierStreamSettings('GOOD', r, { codec: 'nope' }), { name: 'PluginError' });
  assert.throws(() => tierStreamSettings('GOOD', r, { fec: 'nope' }), { name: 'PluginError' });
});
