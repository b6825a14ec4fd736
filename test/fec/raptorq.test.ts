/** RaptorQ specifics: packing into >= 64-byte symbols, the verified guarantee, wasm trap guard. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { subsets } from '../../core/media/fec/subsets.js';
import fecRaptorqHook, {
  createRaptorqFecScheme,
  loadRaptorqRuntime,
  repairable,
  repairCoefficients,
} from '../../src/plugins/fec-raptorq/index.js';

const runtime = await loadRaptorqRuntime();
const [raptorq] = await fecRaptorqHook();

function repairPayload(frameBytes: number, k = 5): Uint8Array {
  const { encoder } = raptorq.create({ k, r: 1, maxFrameBytes: 400 });
  return encoder.encode(Array.from({ length: k }, () => new Uint8Array(frameBytes).fill(7)))[0].data;
}

describe('raptorq', () => {
  test('is available and registered as scheme id 1', () => {
    assert.deepEqual(raptorq.availability(), { available: true });
    assert.equal(raptorq.name, 'raptorq');
    assert.equal(raptorq.schemeId, 1);
  });

  test('repair payload = u16 slot size + symbol of max(64, slot rounded up to 8) bytes', () => {
    for (const [frameBytes, slot, symbol] of [
      [1, 3, 64],
      [6, 8, 64],
      [60, 62, 64],
      [63, 65, 72],
      [300, 302, 304],
    ]) {
      const data = repairPayload(frameBytes);
      assert.equal((data[0] << 8) | data[1], slot, `slot for ${frameBytes}-byte frames`);
      assert.equal(data.length, 2 + symbol, `symbol for ${frameBytes}-byte frames`);
    }
  });

  test('small frames are packed: one repair packet of 6-byte frames rebuilds a block of 8', () => {
    const params = { k: 8, r: 1, maxFrameBytes: 6 };
    const frames = Array.from({ length: 8 }, (_, i) => Uint8Array.of(i, 1, 2, 3, 4, 5));
    const [repairPacket] = raptorq.create(params).encoder.encode(frames);
    assert.deepEqual(raptorq.create(params).decoder.decode([repairPacket], 8), frames);
  });

  test('decodability is exactly full rank of the coefficient submatrix, failures included', () => {
    let failures = 0;
    for (const [ks, r] of [
      [7, 5],
      [10, 3],
    ]) {
      const coefficients = repairCoefficients(runtime, ks, r);
      const object = Uint8Array.from({ length: ks * 64 }, (_, i) => (i * 37 + 11) & 0xff);
      const packets = runtime.encode(object, 64, r);
      for (let e = 1; e <= r; e++) {
        for (const lostPackets of subsets(ks + r, e)) {
          const lost = lostPackets.filter((i) => i < ks);
          const received = [...Array(r).keys()].filter((j) => !lostPackets.includes(ks + j));
          const kept = packets.filter((_, i) => !lostPackets.includes(i));
          const decoded = runtime.decode(object.length, 64, kept);
          const predicted = lost.length === 0 || repairable(coefficients, lost, received);
          assert.equal(decoded !== undefined, predicted, `ks=${ks} r=${r} lost [${lostPackets.join(',')}]`);
          if (decoded !== undefined) assert.deepEqual(decoded, object);
          if (!predicted) failures++;
        }
      }
    }
    assert.ok(failures > 0, 'the geometries chosen include patterns RaptorQ cannot decode');
  });

  test('the guarantee is verified, not assumed: MDS where it holds, less where it does not', () => {
    const g = (k: number, r: number) => raptorq.guaranteedRecoverable({ k, r, maxFrameBytes: 160 });
    assert.equal(g(5, 5), 5);
    assert.equal(g(8, 4), 4);
    assert.equal(g(7, 5), 4, 'some 7-symbol blocks do not decode from exactly 7 of 12 symbols');
    assert.equal(g(5, 0), 0);
    assert.ok(g(64, 64) >= 1);
  });

  test('a wasm trap becomes a DecodeError and the runtime keeps working after it', (t) => {
    t.mock.method(console, 'error', () => undefined); // the crate's panic hook prints the panic
    const badBlockNumber = new Uint8Array(68).fill(0xff);
    assert.throws(() => runtime.decode(320, 64, [badBlockNumber]), { name: 'DecodeError', reason: 'wasm-trap' });
    const object = Uint8Array.from({ length: 320 }, (_, i) => i & 0xff);
    const packets = runtime.encode(object, 64, 2);
    assert.deepEqual(runtime.decode(320, 64, packets.slice(2)), object);
  });

  test('when the wasm module cannot load the scheme is listed as unavailable and refuses to run', () => {
    const broken = createRaptorqFecScheme(new Error('raptorq_bg.wasm: ENOENT'));
    const availability = broken.availability();
    assert.equal(availability.available, false);
    assert.match(availability.available ? '' : availability.reason, /ENOENT/);
    assert.throws(() => broken.create({ k: 5, r: 2, maxFrameBytes: 100 }), { name: 'PluginError' });
    assert.throws(() => broken.guaranteedRecoverable({ k: 5, r: 2, maxFrameBytes: 100 }), { name: 'PluginError' });
  });
});
