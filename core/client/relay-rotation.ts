/**
 * A call's relays, in the order the user gave them (`wzp call A,B ...`): where to go when the
 * current one drains or is lost. Round robin: each attempt goes to the next relay after the
 * last one tried, wrapping around (so with one relay every attempt is that relay, as a plain
 * reconnect). How many attempts, how fast, for how long: the LinkSupervisor's bounds
 * (back-off, --reconnect seconds); this only says where.
 *
 * Each relay is trusted on its own (its own pin or --relay-fingerprint entry: `open` does
 * that). A relay that presents another certificate than the one we trust for it is not tried
 * again in this call; only when every relay did that is the FingerprintMismatchError passed
 * on, which stops the supervisor's attempts.
 */
import { FingerprintMismatchError, errorMessage } from '../errors.js';

export interface RelayRotationOptions<S> {
  /** HOST:PORT of each relay, in order (at least one). */
  relays: readonly string[];
  /** The index of the relay the call starts on. */
  current?: number;
  /** Open a session to `relay` (trusting it as its pin says); rejects on any failure. */
  open(relay: string, signal: AbortSignal): Promise<S>;
}

export class RelayRotation<S> {
  readonly #relays: readonly string[];
  readonly #open: RelayRotationOptions<S>['open'];
  /** The relay last tried (and, after a success, the one in use). */
  #cursor: number;
  /** Relays that presented another certificate: never tried again. */
  readonly #untrusted = new Set<number>();

  constructor(opts: RelayRotationOptions<S>) {
    if (opts.relays.length === 0) throw new RangeError('a rotation needs at least one relay');
    this.#relays = [...opts.relays];
    this.#open = opts.open;
    this.#cursor = opts.current ?? 0;
  }

  get relays(): readonly string[] {
    return this.#relays;
  }

  /** The relay in use (or last tried). */
  get current(): string {
    return this.#relays[this.#cursor];
  }

  /** Open the next relay after the last one tried, skipping those with another certificate. */
  async next(signal: AbortSignal): Promise<S> {
    const n = this.#relays.length;
    let i = this.#cursor;
    for (let step = 0; step < n; step++) {
      i = (i + 1) % n;
      if (!this.#untrusted.has(i)) break;
    }
    this.#cursor = i;
    const relay = this.#relays[i];
    try {
      return await this.#open(relay, signal);
    } catch (err) {
      if (!(err instanceof FingerprintMismatchError)) throw err;
      this.#untrusted.add(i);
      if (this.#untrusted.size >= n) throw err;
      // Not a network fault, but the other relays may still do: keep going without this one.
      throw new Error(`${errorMessage(err)}; not trying ${relay} again in this call`, { cause: err });
    }
  }
}
