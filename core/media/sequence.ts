/**
 * Wrapping counters on the wire (u16 sequence and FEC block numbers, u32 timestamps) turned
 * into unbounded ones: the one helper the pipeline and the jitter buffer share.
 */

/** Modulus of the media header's u16 counters (sequence number, FEC block). */
export const U16_MODULUS = 0x1_0000;
/** Modulus of the media header's u32 timestamp. */
export const U32_MODULUS = 0x1_0000_0000;

/** Signed distance from `reference` to `value` on a ring of `modulus`, in [-modulus/2, modulus/2). */
export function wrappedDelta(value: number, reference: number, modulus: number): number {
  const half = modulus / 2;
  return ((((value - reference) % modulus) + modulus + half) % modulus) - half;
}

/**
 * The unbounded counter nearest `reference` (itself unbounded) whose value modulo 2^16 is
 * `u16`: a counter that wrapped forward since the reference comes out above it, a late one
 * from before a wrap below it.
 */
export function unwrapU16(u16: number, reference: number): number {
  return reference + wrappedDelta(u16, reference, U16_MODULUS);
}
