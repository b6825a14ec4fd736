import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  encodeFecBlock,
  FecBlockAssembler,
  FecInterleaver,
  interleave,
  type FecBlockPacket,
} from '../../core/media/fec/interleaver.js';
import type { FecDecoder, FecPacket } from '../../core/media/fec-types.js';
import { rsFecScheme } from '../../src/plugins/fec-rs/index.js';

const K = 3;
const R = 2;
const params = { k: K, r: R, maxFrameBytes: 20 };
const { encoder, decoder } = rsFecScheme.create(params);

function frames(blockId: number): Uint8Array[] {
  return Array.from({ length: K }, (_, i) => Uint8Array.of(blockId, i, blockId ^ i));
}

function blockPackets(blockId: number): FecBlockPacket[] {
  return encodeFecBlock(encoder, frames(blockId)).map((packet) => ({ blockId, k: K, r: R, packet }));
}

function assembler(window: number, decode: FecDecoder = decoder): FecBlockAssembler {
  return new FecBlockAssembler({ window, decoderFor: () => decode });
}

describe('sending side', () => {
  test('encodeFecBlock: source frames as-is, then the repair packets', () => {
    const packets = encodeFecBlock(encoder, frames(7));
    assert.deepEqual(
      packets.map((p) => [p.index, p.repair]),
      [[0, false], [1, false], [2, false], [3, true], [4, true]],
    );
    assert.deepEqual(packets.slice(0, K).map((p) => p.data), frames(7));
  });

  test('interleave sends column by column', () => {
    const order = interleave([blockPackets(0), blockPackets(1), blockPackets(2)]).map(
      (p) => `${p.blockId}.${p.packet.index}`,
    );
    assert.deepEqual(order.slice(0, 7), ['0.0', '1.0', '2.0', '0.1', '1.1', '2.1', '0.2']);
    assert.equal(order.length, 15);
  });

  test('blocks of different sizes: shorter ones drop out of later columns', () => {
    const short = blockPackets(1).slice(0, 2);
    const order = interleave([blockPackets(0), short]).map((p) => `${p.blockId}.${p.packet.index}`);
    assert.deepEqual(order, ['0.0', '1.0', '0.1', '1.1', '0.2', '0.3', '0.4']);
  });

  test('FecInterleaver sends each frame at once, round-robin over the blocks of a group, then their repairs', () => {
    const il = new FecInterleaver({ encoder, k: K, r: R, depth: 2, firstBlockId: 10 });
    const sent = Array.from({ length: 2 * K }, (_, n) => il.push(Uint8Array.of(n)));
    const label = (p: FecBlockPacket) => `${p.blockId}.${p.packet.index}${p.packet.repair ? 'r' : ''}`;
    assert.deepEqual(sent.slice(0, -1).map((packets) => packets.map(label)), [['10.0'], ['11.0'], ['10.1'], ['11.1'], ['10.2']]);
    assert.deepEqual(sent[2 * K - 1].map(label), ['11.2', '10.3r', '11.3r', '10.4r', '11.4r']);
    assert.deepEqual(sent.flat().filter((p) => !p.packet.repair).map((p) => p.packet.data[0]), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(il.flush(), [], 'nothing left after a full group');
    assert.equal(il.push(Uint8Array.of(6))[0].blockId, 12, 'the next group takes the next ids');
  });

  test('flush closes a partial group: its blocks are coded short, with their real k', () => {
    const il = new FecInterleaver({ encoder, k: K, r: R, depth: 2 });
    const sources = [0, 1, 2].flatMap((n) => il.push(Uint8Array.of(n)));
    assert.ok(sources.every((p) => p.k === K), 'source packets carry the nominal k');
    const repairs = il.flush();
    assert.deepEqual(
      repairs.map((p) => [p.blockId, p.k, p.packet.index]),
      [[0, 2, 2], [1, 1, 1], [0, 2, 3], [1, 1, 2]],
    );
    const block0 = rsFecScheme.create({ k: 2, r: R, maxFrameBytes: 20 }).decoder;
    const kept = [sources[2], ...repairs.filter((p) => p.blockId === 0)].map((p) => p.packet);
    assert.deepEqual(block0.decode(kept, 2), [Uint8Array.of(0), Uint8Array.of(2)]);
  });

  test('depth outside 1..64 is a UsageError', () => {
    for (const depth of [0, 65, 1.5]) {
      assert.throws(() => new FecInterleaver({ encoder, k: K, r: R, depth }), { name: 'UsageError' });
      assert.throws(() => assembler(depth), { name: 'UsageError' });
    }
  });
});

describe('receiving side: FecBlockAssembler', () => {
  test('a block with all its frames is handed on at once, without waiting for repair', () => {
    const a = assembler(2);
    const packets = blockPackets(0);
    assert.deepEqual(a.push(packets[0]), []);
    assert.deepEqual(a.push(packets[1]), []);
    assert.deepEqual(a.push(packets[2]), [{ blockId: 0, frames: frames(0) }]);
    assert.deepEqual(a.push(packets[3]), [], 'its repair packets arrive late and are dropped');
    assert.equal(a.stats.droppedPackets, 1);
  });

  test('a block is handed on as soon as repair recovers every frame', () => {
    const a = assembler(2);
    const [, s1, s2, r0] = blockPackets(0);
    a.push(s1);
    a.push(s2);
    assert.deepEqual(a.push(r0), [{ blockId: 0, frames: frames(0) }]);
  });

  test('an unrecoverable block is handed on with holes once `window` newer blocks appear', () => {
    const a = assembler(2);
    a.push(blockPackets(0)[1]);
    assert.deepEqual(a.push(blockPackets(1)[0]), []);
    const out = a.push(blockPackets(2)[0]);
    assert.deepEqual(out, [{ blockId: 0, frames: [undefined, frames(0)[1], undefined] }]);
    assert.equal(a.push(blockPackets(0)[0]).length, 0, 'late packet for a closed block');
    assert.equal(a.stats.droppedPackets, 1);
  });

  test('duplicates and packets with impossible or inconsistent geometry are dropped, not decoded', () => {
    const a = assembler(4);
    const [s0] = blockPackets(0);
    a.push(s0);
    a.push(s0);
    a.push({ ...s0, k: 2, packet: { ...s0.packet, index: 1 } });
    a.push({ ...s0, blockId: 1, k: 0 });
    a.push({ ...s0, blockId: 1, r: 65 });
    a.push({ ...s0, blockId: 1, packet: { ...s0.packet, index: K + R } });
    a.push({ ...s0, blockId: 1, packet: { ...s0.packet, repair: true } });
    assert.equal(a.stats.droppedPackets, 6);
    assert.deepEqual(a.flush(), [{ blockId: 0, frames: [frames(0)[0], undefined, undefined] }]);
  });

  test('a block closed early takes its k from its repair packets', () => {
    const il = new FecInterleaver({ encoder, k: K, r: R, depth: 1 });
    const [s0] = il.push(Uint8Array.of(7));
    const [s1] = il.push(Uint8Array.of(8));
    const [r0, r1] = il.flush();
    const a = assembler(2);
    assert.deepEqual(a.push(s0), [], 'k = 3 for now: nothing to do');
    assert.deepEqual(a.push(r1), [{ blockId: 0, frames: [Uint8Array.of(7), Uint8Array.of(8)] }], 'k = 2: decodable');
    assert.deepEqual(a.push(r0), [], 'late');
    const b = assembler(2);
    b.push(s0);
    b.push(s1);
    assert.deepEqual(b.push(r0), [{ blockId: 0, frames: [Uint8Array.of(7), Uint8Array.of(8)] }]);
  });

  test('a repair packet whose k excludes a frame already received is dropped', () => {
    const a = assembler(2);
    const [, s1, s2, r0] = blockPackets(0);
    a.push(s2);
    a.push({ ...r0, k: 2, packet: { ...r0.packet, index: 2 } });
    assert.equal(a.stats.droppedPackets, 1);
    a.push(s1);
    assert.equal(a.stats.droppedPackets, 1);
  });

  test('expireBefore hands on older blocks in id order; later packets for them are dropped', () => {
    const a = assembler(8);
    for (const id of [3, 1, 2]) a.push(blockPackets(id)[0]);
    assert.deepEqual(a.expireBefore(3).map((b) => b.blockId), [1, 2]);
    assert.deepEqual(a.push(blockPackets(1)[1]), []);
    assert.equal(a.stats.droppedPackets, 1);
    assert.deepEqual(a.flush().map((b) => b.blockId), [3]);
  });

  test('a DecodeError from the scheme is counted and the received frames still go on', () => {
    const [s0, , , r0] = blockPackets(0);
    const garbled: FecPacket = { ...r0.packet, data: new Uint8Array(1) };
    const a = assembler(2);
    a.push(s0);
    a.push({ ...r0, packet: garbled });
    assert.deepEqual(a.flush(), [{ blockId: 0, frames: [frames(0)[0], undefined, undefined] }]);
    assert.equal(a.stats.decodeErrors, 1);
  });

  test('errors other than DecodeError are bugs and propagate', () => {
    const broken: FecDecoder = {
      decode() {
        throw new TypeError('bug');
      },
    };
    const a = assembler(2, broken);
    assert.throws(() => {
      for (const p of blockPackets(0)) a.push(p);
    }, TypeError);
  });
});
