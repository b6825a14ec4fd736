/**
 * A bounded FIFO of 16-bit samples for real-time audio: a producer on the device clock and a
 * consumer on the call's clock share it, and neither may ever block. When the producer gets
 * ahead by more than the capacity, the oldest samples are dropped (stale audio is worth less
 * than fresh audio in a call) and the loss is counted.
 */
import { InternalError } from '../errors.js';

export class SampleRing {
  private readonly buffer: Int16Array;
  /** Index of the oldest buffered sample. */
  private head = 0;
  private length = 0;
  /** Samples discarded because the ring was full. */
  dropped = 0;
  /** Writes that had to discard samples. */
  overflows = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity <= 0) {
      throw new InternalError(`SampleRing: capacity must be a positive integer, got ${capacity}`);
    }
    this.buffer = new Int16Array(capacity);
  }

  /** Buffered samples. */
  available(): number {
    return this.length;
  }

  /** Append samples, discarding the oldest ones if they do not fit. Returns the number discarded. */
  write(samples: Int16Array): number {
    const kept = samples.length > this.capacity ? samples.subarray(samples.length - this.capacity) : samples;
    const neverStored = samples.length - kept.length;
    const evicted = Math.max(0, this.length + kept.length - this.capacity);
    if (neverStored + evicted > 0) {
      this.head = (this.head + evicted) % this.capacity;
      this.length -= evicted;
      this.dropped += neverStored + evicted;
      this.overflows++;
    }
    const tail = (this.head + this.length) % this.capacity;
    const firstPart = Math.min(kept.length, this.capacity - tail);
    this.buffer.set(kept.subarray(0, firstPart), tail);
    this.buffer.set(kept.subarray(firstPart), 0);
    this.length += kept.length;
    return neverStored + evicted;
  }

  /** Remove and return exactly `count` samples, or undefined (taking nothing) if fewer are buffered. */
  read(count: number): Int16Array | undefined {
    return count > this.length ? undefined : this.take(count);
  }

  /** Remove and return up to `count` samples (possibly fewer, possibly none). */
  readUpTo(count: number): Int16Array {
    return this.take(Math.min(count, this.length));
  }

  private take(count: number): Int16Array {
    const out = new Int16Array(count);
    const firstPart = Math.min(count, this.capacity - this.head);
    out.set(this.buffer.subarray(this.head, this.head + firstPart));
    out.set(this.buffer.subarray(0, count - firstPart), firstPart);
    this.head = (this.head + count) % this.capacity;
    this.length -= count;
    return out;
  }
}
