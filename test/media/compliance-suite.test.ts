/**
 * The compliance suite itself: it must catch codecs that break the contract, or passing it
 * would mean nothing.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MAX_CODEC_PAYLOAD_BYTES, codecComplianceChecks } from '../../core/compliance/codec.js';
import { DecodeError, PluginError } from '../../core/errors.js';
import type { Codec, CodecFactory } from '../../core/media/codec-types.js';

/** A correct 20 ms codec: 8-bit linear PCM at 48 kHz, 960 bytes per frame. */
class EightBitCodec implements Codec {
  readonly name = 'eight-bit';
  readonly frameSamples = 960;
  encode(pcm: Int16Array): Uint8Array {
    if (pcm.length !== this.frameSamples) throw new PluginError('wrong frame size');
    return Uint8Array.from(pcm, (s) => (s >> 8) + 128);
  }
  decode(payload: Uint8Array): Int16Array {
    if (payload.length !== this.frameSamples) throw new DecodeError('eight-bit', 'wrong-length', 'wrong length');
    return Int16Array.from(payload, (b) => (b - 128) << 8);
  }
  close(): void {}
}

function factoryOf(make: () => Codec, overrides: Partial<CodecFactory> = {}): CodecFactory {
  return {
    name: 'eight-bit',
    version: '1.0.0',
    codecId: 200,
    description: '8-bit linear PCM (test double)',
    frameDurationsMs: [20],
    nominalBitrate: 384_000,
    minRoundTripSnrDb: 20,
    availability: () => ({ available: true }),
    create: make,
    ...overrides,
  };
}

async function failures(factory: CodecFactory): Promise<string[]> {
  const failed: string[] = [];
  for (const check of codecComplianceChecks(factory, { randomPayloads: 50 })) {
    try {
      await check.run();
    } catch {
      failed.push(check.name);
    }
  }
  return failed;
}

describe('codec compliance suite', () => {
  test('passes a correct codec', async () => {
    assert.deepEqual(await failures(factoryOf(() => new EightBitCodec())), []);
  });

  test('flags invalid metadata', async () => {
    for (const overrides of [{ name: 'Bad Name' }, { codecId: 300 }, { frameDurationsMs: [] }, { version: 'one' }]) {
      const failed = await failures(factoryOf(() => new EightBitCodec(), overrides));
      assert.ok(failed.includes('metadata is valid'), JSON.stringify(overrides));
    }
  });

  test('flags a decoder that lets a RangeError escape', async () => {
    class Leaky extends EightBitCodec {
      override decode(payload: Uint8Array): Int16Array {
        if (payload.length !== this.frameSamples) throw new RangeError('offset out of bounds');
        return super.decode(payload);
      }
    }
    assert.deepEqual(await failures(factoryOf(() => new Leaky())), ['malformed payloads throw only DecodeError (20 ms)']);
  });

  test('flags an encoder that accepts wrong-sized frames or fails with another error', async () => {
    class Lenient extends EightBitCodec {
      override encode(pcm: Int16Array): Uint8Array {
        return Uint8Array.from(pcm, (s) => (s >> 8) + 128);
      }
    }
    assert.deepEqual(await failures(factoryOf(() => new Lenient())), ['rejects wrong-sized input with a PluginError (20 ms)']);
  });

  test('flags payloads over the datagram budget', async () => {
    class Bloated extends EightBitCodec {
      override encode(pcm: Int16Array): Uint8Array {
        const payload = new Uint8Array(MAX_CODEC_PAYLOAD_BYTES + 1);
        payload.set(super.encode(pcm));
        return payload;
      }
      override decode(payload: Uint8Array): Int16Array {
        return super.decode(payload.subarray(0, this.frameSamples));
      }
    }
    assert.ok((await failures(factoryOf(() => new Bloated()))).includes('payloads fit the datagram budget (20 ms)'));
  });

  test('flags a round trip below the promised SNR, or one that loses the level', async () => {
    assert.deepEqual(await failures(factoryOf(() => new EightBitCodec(), { minRoundTripSnrDb: 60 })), [
      'round trip keeps the signal (20 ms)',
    ]);
    class Quiet extends EightBitCodec {
      override decode(payload: Uint8Array): Int16Array {
        return super.decode(payload).map((s) => s >> 2);
      }
    }
    assert.deepEqual(await failures(factoryOf(() => new Quiet(), { minRoundTripSnrDb: undefined })), [
      'round trip keeps the signal (20 ms)',
    ]);
  });

  test('flags concealment of the wrong length and a second close() that throws', async () => {
    class Fragile extends EightBitCodec {
      private closed = false;
      conceal(): Int16Array {
        return new Int16Array(this.frameSamples / 2);
      }
      override close(): void {
        if (this.closed) throw new Error('already closed');
        this.closed = true;
      }
    }
    assert.deepEqual(await failures(factoryOf(() => new Fragile())), [
      'conceal(), if provided, returns full frames (20 ms)',
      'close() twice is safe (20 ms)',
    ]);
  });

  test('reports an unavailable codec with its reason', async () => {
    const unavailable = factoryOf(() => new EightBitCodec(), {
      availability: () => ({ available: false, reason: 'libfoo missing', hint: 'apt install libfoo' }),
    });
    const check = codecComplianceChecks(unavailable).find((c) => c.name === 'is available here');
    assert.throws(() => check?.run(), /libfoo missing.*apt install libfoo/);
  });
});
