import assert from 'node:assert/strict';
import { DecodeError } from '../../core/errors.js';

/** Bytes from hex text; spaces and `|` separators are ignored. */
export function hex(text: string): Uint8Array {
  const digits = text.replace(/[\s|]/g, '');
  assert.match(digits, /^([0-9a-f]{2})*$/i, `bad hex fixture: ${text}`);
  return Uint8Array.from(digits.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Asserts that `run` throws a DecodeError with this reason (and format, if given). */
export function assertDecodeError(run: () => unknown, reason: string, format?: string): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof DecodeError, `expected DecodeError, got ${String(error)}`);
    assert.equal(error.name, 'DecodeError');
    assert.equal(error.reason, reason, `reason (message: ${error.message})`);
    if (format !== undefined) assert.equal(error.format, format);
    return true;
  });
}

/**
 * Runs a decoder on untrusted bytes: returns its result, or undefined if it threw a
 * DecodeError. Any other exception fails the test.
 */
export function decodeOrReject<T>(run: () => T): T | undefined {
  try {
    return run();
  } catch (error) {
    if (error instanceof DecodeError) return undefined;
    throw error;
  }
}

/** `bytes` with a copy in a larger buffer at a non-zero offset, to catch byteOffset bugs. */
export function atOffset(bytes: Uint8Array, offset = 3): Uint8Array {
  const backing = new Uint8Array(offset + bytes.length + 2).fill(0xee);
  backing.set(bytes, offset);
  return backing.subarray(offset, offset + bytes.length);
}
