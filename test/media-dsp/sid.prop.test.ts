import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { SID_BANDS, decodeSid, encodeSid, type SidDescription } from '../../core/media/comfort-noise.js';

const level = fc.double({ min: -127, max: 0, noNaN: true });

test('SID round trip: decoding the encoding gives the values rounded to whole dB', () => {
  fc.assert(
    fc.property(level, fc.option(fc.array(level, { minLength: SID_BANDS, maxLength: SID_BANDS })), (levelDb, bands) => {
      const sid = bands === null ? { levelDb } : { levelDb, bandLevelsDb: bands };
      const decoded = decodeSid(encodeSid(sid));
      assert.ok(Math.abs(decoded.levelDb - levelDb) <= 0.5);
      assert.equal(decoded.bandLevelsDb?.length, bands?.length);
      decoded.bandLevelsDb?.forEach((db, b) => assert.ok(Math.abs(db - (bands?.[b] ?? Number.NaN)) <= 0.5));
      assert.deepEqual(encodeSid(decoded), encodeSid(sid), 'byte-exact re-encoding');
    }),
  );
});

test('random bytes decode to a SID or throw only DecodeError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 16 }), (bytes) => {
      let sid: SidDescription;
      try {
        sid = decodeSid(bytes);
      } catch (error) {
        assert.equal((error as Error).name, 'DecodeError');
        return;
      }
      assert.deepEqual(encodeSid(sid), bytes, 'a SID that decodes re-encodes to the same bytes');
    }),
  );
});
