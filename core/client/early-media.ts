/**
 * Media that arrives from a relay slot before its member is admitted: held briefly, and handed
 * over once it is.
 *
 * The relay forwards a member's datagrams from the moment it joined; the announcement that
 * admits it comes on a signalling stream (our join answer, or the join notice pushed to us),
 * and the datagrams often overtake it. Dropping them costs the first audio a frame or more (a
 * 1:1 call's caller joins while the callee's audio is already flowing). They cannot be opened
 * before admission anyway (no key), so holding them lets nothing in that admission would not:
 * a slot that is never admitted, or refused, has its datagrams expire here.
 *
 * Bounded: at most MAX_EARLY_DATAGRAMS in all, MAX_EARLY_SLOTS slots, each datagram for
 * EARLY_DATAGRAM_MS; the oldest give way (anyone in the room can send datagrams from its slot).
 */

/** Datagrams held in all (~0.3 s of one GOOD stream with its repair packets). */
export const MAX_EARLY_DATAGRAMS = 24;
/** Slots held for at once; a datagram from another slot replaces the oldest slot's. */
export const MAX_EARLY_SLOTS = 4;
/** How long a datagram waits for its member's admission, ms (a signalling trip is ~10-50 ms). */
export const EARLY_DATAGRAM_MS = 300;

interface Held {
  sourceId: number;
  datagram: Uint8Array;
  arrivalMs: number;
}

export class EarlyDatagrams {
  readonly #held: Held[] = [];
  /** Datagrams that expired or gave way before their slot was admitted. */
  dropped = 0;
  /** Datagrams handed over after their slot was admitted. */
  delivered = 0;

  /** Hold a datagram of a slot not admitted (yet). `datagram` must stay unchanged (copy it if its buffer is reused). */
  hold(sourceId: number, datagram: Uint8Array, arrivalMs: number): void {
    this.#expire(arrivalMs);
    const slots = new Set(this.#held.map((h) => h.sourceId));
    if (!slots.has(sourceId) && slots.size >= MAX_EARLY_SLOTS) {
      // A new slot: the one held longest gives way.
      const oldest = this.#held[0].sourceId;
      this.#drop((h) => h.sourceId === oldest);
    }
    this.#held.push({ sourceId, datagram, arrivalMs });
    if (this.#held.length > MAX_EARLY_DATAGRAMS) {
      this.#held.shift();
      this.dropped++;
    }
  }

  /**
   * The datagrams held for `sourceId` (now admitted), oldest first, within EARLY_DATAGRAM_MS of
   * `nowMs`, from the first one `usable` accepts (those before it are dropped: e.g. mini
   * headers before the stream's first full header, which nothing here could expand); none of
   * them is held any longer.
   */
  take(sourceId: number, nowMs: number, usable: (datagram: Uint8Array) => boolean = () => true): Uint8Array[] {
    this.#expire(nowMs);
    const mine = this.#held.filter((h) => h.sourceId === sourceId).map((h) => h.datagram);
    if (mine.length > 0) this.#drop((h) => h.sourceId === sourceId, false);
    const first = mine.findIndex(usable);
    const taken = first < 0 ? [] : mine.slice(first);
    this.dropped += mine.length - taken.length;
    this.delivered += taken.length;
    return taken;
  }

  /** Everything held is dropped (the link to the relay was lost: slots mean nothing now). */
  clear(): void {
    this.dropped += this.#held.length;
    this.#held.length = 0;
  }

  get size(): number {
    return this.#held.length;
  }

  #expire(nowMs: number): void {
    this.#drop((h) => nowMs - h.arrivalMs > EARLY_DATAGRAM_MS);
  }

  #drop(which: (h: Held) => boolean, count = true): void {
    let kept = 0;
    for (const h of this.#held) {
      if (!which(h)) this.#held[kept++] = h;
      else if (count) this.dropped++;
    }
    this.#held.length = kept;
  }
}
