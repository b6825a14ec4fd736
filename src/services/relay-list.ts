/**
 * Several relays for one call (`wzp call RELAY1,RELAY2 --room ...`, `wzp record A,B out.wav`):
 * the RELAY argument is a comma-separated list. The call starts on the first that answers;
 * when its relay drains (its notice) or is lost, it moves to the next, round robin
 * (core/client/relay-rotation.ts). Each relay is trusted on its own: its own TOFU pin, or its
 * own entry of `--relay-fingerprint FP1,FP2` (same order; an empty entry: the pin). One
 * relay is exactly the single-relay behaviour it always was.
 */
import { UsageError, errorMessage } from '../../core/errors.js';
import { parseFingerprint } from '../../core/crypto/fingerprint.js';
import { RelaySession } from '../../core/client/relay-session.js';
import { RelayRotation } from '../../core/client/relay-rotation.js';
import type { CallOptions } from '../../core/client/call.js';
import { expectFingerprint, parseDialTarget } from '../../core/transport/quic.js';
import { connectToRelay, type RelayConnection } from './relay-connect.js';

/** The most relays one call takes: a list is a few fallbacks, not a scan. */
export const MAX_RELAYS = 8;

/**
 * `HOST:PORT[,HOST:PORT...]` as typed: each entry checked as a dial target, no duplicates, at
 * most MAX_RELAYS. Entries keep their spelling (pins are keyed by it, normalised).
 */
export function parseRelayList(text: string): string[] {
  const relays = text.split(',').map((r) => r.trim());
  if (relays.some((r) => r === '')) {
    throw new UsageError(`RELAY "${text}": an empty entry in the list`, { suggestions: ['give HOST:PORT, or several separated by commas: relay1:4433,relay2:4433'] });
  }
  if (relays.length > MAX_RELAYS) throw new UsageError(`RELAY: at most ${MAX_RELAYS} relays, got ${relays.length}`);
  const seen = new Set<string>();
  for (const r of relays) {
    parseDialTarget(r); // throws a UsageError naming the bad entry
    const key = r.toLowerCase();
    if (seen.has(key)) throw new UsageError(`RELAY: ${r} is in the list twice`);
    seen.add(key);
  }
  return relays;
}

/**
 * `--relay-fingerprint` for a list of relays: one fingerprint per relay, comma-separated, in
 * the list's order (an empty entry: that relay is trusted by its pin). One fingerprint for
 * one relay, as always.
 */
export function relayFingerprints(flag: string | undefined, relays: readonly string[]): (string | undefined)[] {
  if (flag === undefined) return relays.map(() => undefined);
  const entries = flag.split(',').map((f) => f.trim());
  if (entries.length !== relays.length) {
    throw new UsageError(`--relay-fingerprint: ${entries.length} fingerprint(s) for ${relays.length} relays`, {
      suggestions: ['give one per relay, comma-separated in the same order (leave an entry empty to trust that relay by its pin): --relay-fingerprint FP1,FP2'],
    });
  }
  return entries.map((f) => {
    if (f === '') return undefined;
    parseFingerprint(f); // throws a UsageError for a malformed one
    return f;
  });
}

export interface RelayListConnectOptions {
  relays: readonly string[];
  fingerprints: readonly (string | undefined)[];
  configDir: string;
  alias?: string;
  /** Access token for relays that require one (`--token` / WZP_TOKEN), sent in each hello. */
  token?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** A relay of the list that could not be used (the next one is tried). */
  onWarning?(message: string): void;
}

/**
 * Connect to the first relay of the list that answers and is trusted, trying each once in
 * order. With one relay: connectToRelay, its errors as they are. With several that all fail:
 * the first relay's error (its kind decides the exit code), its message naming every
 * relay's failure.
 */
export async function connectFirstRelay(opts: RelayListConnectOptions): Promise<RelayConnection & { index: number }> {
  const failures: { relay: string; err: unknown }[] = [];
  for (const [index, relay] of opts.relays.entries()) {
    try {
      const connection = await connectToRelay({
        relay,
        configDir: opts.configDir,
        relayFingerprint: opts.fingerprints[index],
        alias: opts.alias,
        token: opts.token,
        timeoutMs: opts.timeoutMs,
        signal: opts.signal,
      });
      return { ...connection, index };
    } catch (err) {
      if (opts.relays.length === 1 || opts.signal?.aborted) throw err;
      failures.push({ relay, err });
      if (index < opts.relays.length - 1) opts.onWarning?.(`relay ${relay} could not be used (${errorMessage(err)}): trying ${opts.relays[index + 1]}`);
    }
  }
  const first = failures[0].err;
  const summary = `no relay of ${opts.relays.join(', ')} could be used: ${failures.map((f) => `${f.relay}: ${errorMessage(f.err)}`).join('; ')}`;
  if (first instanceof Error) {
    first.message = summary;
    throw first;
  }
  throw new Error(summary);
}

/**
 * The rotation a call moves along: a relay already connected in this call must present the
 * certificate it presented then (as a reconnect always required); one not met yet is
 * trusted by its pin or --relay-fingerprint entry (and pinned on first use).
 */
export function relayRotation(opts: {
  relays: readonly string[];
  fingerprints: readonly (string | undefined)[];
  current: number;
  /** The certificate the first relay presented. */
  currentFingerprint: string;
  configDir: string;
  alias?: string;
  token?: string;
  mediaPath: 'auto' | 'quic';
}): RelayRotation<RelaySession> {
  const seen = new Map<string, string>([[opts.relays[opts.current], opts.currentFingerprint]]);
  return new RelayRotation<RelaySession>({
    relays: opts.relays,
    current: opts.current,
    open: async (relay, signal) => {
      const known = seen.get(relay);
      if (known !== undefined) {
        return RelaySession.open({ relay: parseDialTarget(relay), alias: opts.alias, token: opts.token, signal, verify: expectFingerprint(known, relay), mediaPath: opts.mediaPath });
      }
      const { session, fingerprint } = await connectToRelay({
        relay,
        configDir: opts.configDir,
        relayFingerprint: opts.fingerprints[opts.relays.indexOf(relay)],
        alias: opts.alias,
        token: opts.token,
        signal,
      });
      session.useMediaPath(opts.mediaPath);
      seen.set(relay, fingerprint);
      return session;
    },
  });
}

/**
 * What a room call needs to move along `rotation`: reconnect to the next relay; with several,
 * move at a drain notice and name the relay in each failed attempt's warning.
 */
export function callMoves(rotation: RelayRotation<RelaySession>): Pick<CallOptions, 'reconnect' | 'moveOnDrain' | 'reconnectTarget'> {
  const reconnect = (signal: AbortSignal) => rotation.next(signal);
  if (rotation.relays.length === 1) return { reconnect };
  return { reconnect, moveOnDrain: true, reconnectTarget: () => rotation.current };
}
