/**
 * Source ids a relay gives its room members (core/relay/rooms.ts): this relay's 16-bit prefix,
 * then a member number, so ids are unique across a federation (docs/federation.md).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RoomManager, sourcePrefixOf, type RoomMember } from '../../core/relay/rooms.js';
import { sourceIdPrefix } from '../../core/wire/room-source.js';

const ROOM = 'ab'.repeat(16);

function member(sourceId: number): RoomMember {
  return {
    sourceId,
    source: '127.0.0.1',
    alias: '',
    fingerprint: '',
    datagrams: { send: () => true } as unknown as RoomMember['datagrams'],
    push: () => undefined,
  };
}

describe('source ids', () => {
  test("a relay's default prefix is the first 16 bits of its fingerprint", () => {
    assert.equal(sourcePrefixOf('a1b2:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0001'), 0xa1b2);
    assert.equal(sourcePrefixOf('0000:ffff:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0001'), 0);
  });

  test('ids carry the prefix in their high half and a member number 1-65535 in the low half, skipping ids in use', () => {
    const rooms = new RoomManager(undefined, 0xfffe);
    const first = rooms.allocateSourceId();
    assert.equal(first, 0xfffe_0001);
    assert.equal(sourceIdPrefix(first), 0xfffe);
    rooms.commitJoin(ROOM, member(first), undefined);
    rooms.commitJoin(ROOM, member(0xfffe_0002), undefined);
    assert.ok(rooms.inUse(0xfffe_0002));
    assert.equal(rooms.allocateSourceId(), 0xfffe_0003, 'an id in use is skipped');
    rooms.leave(ROOM, first);
    assert.ok(!rooms.inUse(first));
    // Member numbers wrap from 65535 to 1 (never 0: no id is 0, whatever the prefix).
    const zero = new RoomManager(undefined, 0);
    const ids = new Set<number>();
    for (let i = 0; i < 0xffff + 2; i++) ids.add(zero.allocateSourceId());
    assert.equal(ids.size, 0xffff);
    assert.ok(!ids.has(0));
    assert.ok([...ids].every((id) => id >= 1 && id <= 0xffff));
  });

  test('a prefix outside 16 bits is a bug, not a setting', () => {
    assert.throws(() => new RoomManager(undefined, 0x1_0000), { name: 'InternalError' });
    assert.throws(() => new RoomManager(undefined, -1), { name: 'InternalError' });
  });
});
