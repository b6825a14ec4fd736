/**
 * Signalling over QUIC streams: one short-lived bidirectional stream per exchange.
 *
 * The requester opens a stream, writes one framed SignalMessage, closes its write side and
 * reads the reply; the responder answers and closes. Measured (docs/dependencies.md): one persistent
 * signalling stream per connection triples datagram p99 latency under load, while
 * short-lived request/response streams cost nothing measurable, hence this shape.
 *
 * Bad input never breaks a connection: a malformed frame is counted and skipped, an unknown
 * message type is counted and ignored (forward compatibility), a stream that exceeds the
 * limits is aborted.
 */
import type { QUICConnection, QUICStream } from '@matrixai/quic';
import { events as quicEvents } from '@matrixai/quic';
import { AbortError, NetworkError, ProtocolError, errorMessage } from '../errors.js';
import { encodeSignal, SignalFrameDecoder, type SignalMessage } from '../wire/signal.js';

/** Frames a responder reads from one stream before aborting it. */
const MAX_FRAMES_PER_STREAM = 16;
/** How long a responder waits for a requester to finish writing. */
const STREAM_READ_TIMEOUT_MS = 10_000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 3_000;

export interface SignalCounters {
  received: number;
  malformed: number;
  unknown: number;
  abortedStreams: number;
}

export type KnownSignal = Exclude<SignalMessage, { type: 'unknown' }>;

/** Why a responder dropped a frame or aborted a stream (SignalServeHooks.onDropped). */
export type SignalDropReason =
  /** A frame inside intact framing that does not decode; skipped. */
  | 'malformed'
  /** A message type this version does not know; ignored (forward compatibility). */
  | 'unknown-type'
  /** A declared frame length over the limit: the stream is aborted. */
  | 'too-large'
  /** More frames on one stream than a request needs: aborted. */
  | 'too-many-frames'
  /** The requester did not finish writing in time: aborted. */
  | 'timeout'
  /** More streams at once than allowed on this connection: the new one is reset. */
  | 'too-many-streams'
  /** Unfinished frames held more bytes than the connection's or everyone's budget: aborted. */
  | 'memory'
  /** A reply could not be encoded (a bug: counted, an error reply sent instead). */
  | 'reply-failed';

/**
 * Bytes held in unfinished signal frames by all the connections of one server: each
 * connection's partial frames count here, and a stream that would take the total over
 * `limit` is aborted. One per relay.
 */
export class SignalMemoryBudget {
  used = 0;
  constructor(public limit: number) {}
}

/** What one connection may make its responder hold (defaults: no bound beyond the codec's). */
export interface SignalServeLimits {
  /** Largest frame payload read (default and ceiling: MAX_SIGNAL_PAYLOAD_BYTES). */
  maxPayloadBytes?: number;
  /** Streams served at once; a stream beyond is reset unread. */
  maxConcurrentStreams?: number;
  /** Bytes of unfinished frames held for this connection. */
  maxBufferedBytes?: number;
  /** The server-wide budget this connection's unfinished frames count toward. */
  budget?: SignalMemoryBudget;
  /** How long a requester may take to finish writing its stream (default 10 s). */
  readTimeoutMs?: number;
}

export interface SignalServeHooks {
  /**
   * Answer one request; return the replies to write (possibly none). `payloadBytes` is the
   * size of the frame's JSON, for byte budgets.
   */
  handle(msg: KnownSignal, payloadBytes: number): Promise<KnownSignal[]> | KnownSignal[];
  /** Told about every dropped frame, aborted stream or unknown type, for counters and logs. */
  onDropped?(reason: SignalDropReason, detail: string): void;
}

/** Serve signalling requests on every stream the peer opens on this connection. */
export function serveSignals(connection: QUICConnection, hooks: SignalServeHooks, limits: SignalServeLimits = {}): SignalCounters {
  const counters: SignalCounters = { received: 0, malformed: 0, unknown: 0, abortedStreams: 0 };
  const state: ConnectionSignalState = { streams: 0, buffered: 0 };
  connection.addEventListener(quicEvents.EventQUICConnectionStream.name, (ev: Event) => {
    const stream = (ev as quicEvents.EventQUICConnectionStream).detail;
    if (limits.maxConcurrentStreams !== undefined && state.streams >= limits.maxConcurrentStreams) {
      counters.abortedStreams++;
      hooks.onDropped?.('too-many-streams', `more than ${limits.maxConcurrentStreams} signal streams at once`);
      stream.cancel(new ProtocolError('too many signal streams at once'));
      return;
    }
    state.streams++;
    void serveStream(stream, hooks, counters, limits, state).finally(() => {
      state.streams--;
    });
  });
  return counters;
}

interface ConnectionSignalState {
  /** Streams being served now. */
  streams: number;
  /** Bytes of unfinished frames held over all of them. */
  buffered: number;
}

async function serveStream(
  stream: QUICStream,
  hooks: SignalServeHooks,
  counters: SignalCounters,
  limits: SignalServeLimits,
  state: ConnectionSignalState,
): Promise<void> {
  const decoder = new SignalFrameDecoder({
    maxPayloadBytes: limits.maxPayloadBytes,
    onInvalidFrame: (err) => {
      // A bad frame inside intact framing: skip it, the next one may be fine.
      counters.malformed++;
      hooks.onDropped?.('malformed', err.message);
    },
  });
  const reader = stream.readable.getReader();
  const writer = stream.writable.getWriter();
  const abort = (reason: SignalDropReason, detail: string, err: unknown): void => {
    counters.abortedStreams++;
    hooks.onDropped?.(reason, detail);
    stream.cancel(err);
  };
  const timeoutMs = limits.readTimeoutMs ?? STREAM_READ_TIMEOUT_MS;
  const onTimeout = () => abort('timeout', 'signal stream not finished in time', new ProtocolError('signal stream timed out'));
  let timer = setTimeout(onTimeout, timeoutMs);
  /** Bytes of this stream's unfinished frame counted in the connection's and the budget's use. */
  let held = 0;
  const account = (now: number): boolean => {
    const delta = now - held;
    held = now;
    state.buffered += delta;
    if (limits.budget) limits.budget.used += delta;
    return (
      (limits.maxBufferedBytes === undefined || state.buffered <= limits.maxBufferedBytes) &&
      (limits.budget === undefined || limits.budget.used <= limits.budget.limit)
    );
  };
  let frames = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      let messages: { message: SignalMessage; payloadBytes: number }[];
      try {
        messages = decoder.pushSized(value);
      } catch (err) {
        // The framing itself is broken (e.g. a declared length over the limit): the rest of
        // the stream cannot be trusted, so it is aborted.
        counters.malformed++;
        abort('too-large', errorMessage(err), err);
        return;
      }
      if (!account(decoder.bufferedBytes)) {
        abort('memory', 'unfinished signal frames over the memory budget', new ProtocolError('signal memory budget exceeded'));
        return;
      }
      for (const { message: msg, payloadBytes } of messages) {
        if (++frames > MAX_FRAMES_PER_STREAM) {
          abort('too-many-frames', `more than ${MAX_FRAMES_PER_STREAM} frames on one stream`, new ProtocolError('too many frames on one signal stream'));
          return;
        }
        counters.received++;
        if (msg.type === 'unknown') {
          counters.unknown++;
          hooks.onDropped?.('unknown-type', msg.rawType);
          continue;
        }
        // The timeout bounds the requester's writing, not our answer (a relay's token check may
        // wait up to 5 s for its auth service): paused while handling, restarted after.
        clearTimeout(timer);
        const replies = await hooks.handle(msg, payloadBytes);
        timer = setTimeout(onTimeout, timeoutMs);
        for (const reply of replies) await writer.write(encodeReply(reply, hooks));
      }
    }
    await writer.close();
  } catch {
    // The peer reset the stream or the connection closed: nothing to answer.
  } finally {
    clearTimeout(timer);
    account(0);
    reader.releaseLock();
    writer.releaseLock();
  }
}

/** A reply that cannot be encoded (too large: a bug) becomes an error reply, counted. */
function encodeReply(reply: KnownSignal, hooks: SignalServeHooks): Uint8Array {
  try {
    return encodeSignal(reply);
  } catch (err) {
    hooks.onDropped?.('reply-failed', errorMessage(err));
    return encodeSignal({ type: 'error', code: 'internal', message: `the ${reply.type} answer could not be sent` });
  }
}

export interface RequestOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Send one request and wait for the first known reply on the same stream.
 * Rejects with NetworkError on timeout, ProtocolError if the stream ends without a reply.
 */
export async function request(
  connection: QUICConnection,
  msg: KnownSignal,
  opts: RequestOptions = {},
): Promise<KnownSignal> {
  const reply = await exchange(connection, msg, opts, () => true);
  if (!reply) throw new ProtocolError(`the peer closed the stream without answering "${msg.type}"`);
  return reply;
}

/**
 * Send a message that has no reply and wait until the peer has processed it (it closes the
 * stream after handling). Returns the peer's `error` answer if it refused the message, and
 * rejects with NetworkError on timeout.
 */
export async function requestNoReply(
  connection: QUICConnection,
  msg: KnownSignal,
  opts: RequestOptions = {},
): Promise<Extract<KnownSignal, { type: 'error' }> | undefined> {
  const reply = await exchange(connection, msg, opts, (r) => r.type === 'error');
  return reply?.type === 'error' ? reply : undefined;
}

/**
 * Write `msg` on a new stream, close our side, and read replies until one satisfies `wanted`
 * (returned) or the peer closes the stream (undefined). Bounded by a timeout and the signal.
 */
async function exchange(
  connection: QUICConnection,
  msg: KnownSignal,
  opts: RequestOptions,
  wanted: (reply: KnownSignal) => boolean,
): Promise<KnownSignal | undefined> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  let stream: QUICStream;
  try {
    stream = connection.newStream('bidi');
  } catch (err) {
    throw new NetworkError(`cannot open a signalling stream: ${errorMessage(err)}`, { cause: err });
  }
  const work = (async (): Promise<KnownSignal | undefined> => {
    const writer = stream.writable.getWriter();
    await writer.write(encodeSignal(msg));
    await writer.close();
    const reader = stream.readable.getReader();
    // A reply frame we cannot parse is skipped; we keep reading.
    const decoder = new SignalFrameDecoder({ onInvalidFrame: () => undefined });
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return undefined;
      for (const reply of decoder.push(value)) {
        if (reply.type !== 'unknown' && wanted(reply)) {
          void reader.cancel().catch(() => undefined);
          return reply;
        }
      }
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new NetworkError(`no answer to "${msg.type}" within ${timeoutMs} ms`)), timeoutMs);
    onAbort = () => reject(new AbortError(`"${msg.type}" aborted`));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work, guard]);
  } catch (err) {
    stream.cancel(err);
    work.catch(() => undefined);
    throw err;
  } finally {
    clearTimeout(timer);
    if (onAbort) opts.signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * Push one message to the peer on a fresh stream (no reply expected): how a relay tells a
 * member about roster changes and relays other members' signalling. Failures are returned,
 * not thrown: a member that went away is cleaned up by its connection's close event.
 */
export async function push(connection: QUICConnection, msg: KnownSignal): Promise<boolean> {
  return pushFrame(connection, encodeSignal(msg));
}

/**
 * push() of a message already encoded (encodeSignal): a relay telling every member of a room
 * the same thing encodes it once, not once per member.
 */
export async function pushFrame(connection: QUICConnection, frame: Uint8Array): Promise<boolean> {
  try {
    const stream = connection.newStream('bidi');
    const writer = stream.writable.getWriter();
    await writer.write(frame);
    await writer.close();
    // Nothing comes back; release our read side so the stream is fully closed.
    await stream.readable.cancel().catch(() => undefined);
    return true;
  } catch {
    return false;
  }
}
