/**
 * Signalling over QUIC streams: one short-lived bidirectional stream per exchange.
 *
 * The requester opens a stream, writes one framed SignalMessage, closes its write side and
 * reads the reply; the responder answers and closes. FACTS.md measured that one persistent
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

export interface SignalServeHooks {
  /** Answer one request; return the replies to write (possibly none). */
  handle(msg: KnownSignal): Promise<KnownSignal[]> | KnownSignal[];
  /** Told about every dropped frame or unknown type, for logs. */
  onDropped?(reason: string, detail: string): void;
}

/** Serve signalling requests on every stream the peer opens on this connection. */
export function serveSignals(connection: QUICConnection, hooks: SignalServeHooks): SignalCounters {
  const counters: SignalCounters = { received: 0, malformed: 0, unknown: 0, abortedStreams: 0 };
  connection.addEventListener(quicEvents.EventQUICConnectionStream.name, (ev: Event) => {
    const stream = (ev as quicEvents.EventQUICConnectionStream).detail;
    void serveStream(stream, hooks, counters);
  });
  return counters;
}

async function serveStream(stream: QUICStream, hooks: SignalServeHooks, counters: SignalCounters): Promise<void> {
  const decoder = new SignalFrameDecoder({
    onInvalidFrame: (err) => {
      // A bad frame inside intact framing: skip it, the next one may be fine.
      counters.malformed++;
      hooks.onDropped?.('malformed', err.message);
    },
  });
  const reader = stream.readable.getReader();
  const writer = stream.writable.getWriter();
  const timer = setTimeout(() => {
    counters.abortedStreams++;
    hooks.onDropped?.('timeout', 'signal stream not finished in time');
    stream.cancel(new ProtocolError('signal stream timed out'));
  }, STREAM_READ_TIMEOUT_MS);
  let frames = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      let messages: SignalMessage[];
      try {
        messages = decoder.push(value);
      } catch (err) {
        // The framing itself is broken (e.g. a declared length over the limit): the rest of
        // the stream cannot be trusted, so it is aborted.
        counters.malformed++;
        counters.abortedStreams++;
        hooks.onDropped?.('malformed', errorMessage(err));
        stream.cancel(err);
        return;
      }
      for (const msg of messages) {
        if (++frames > MAX_FRAMES_PER_STREAM) {
          counters.abortedStreams++;
          hooks.onDropped?.('too-many-frames', `more than ${MAX_FRAMES_PER_STREAM} frames on one stream`);
          stream.cancel(new ProtocolError('too many frames on one signal stream'));
          return;
        }
        counters.received++;
        if (msg.type === 'unknown') {
          counters.unknown++;
          hooks.onDropped?.('unknown-type', msg.rawType);
          continue;
        }
        const replies = await hooks.handle(msg);
        for (const reply of replies) await writer.write(encodeSignal(reply));
      }
    }
    await writer.close();
  } catch {
    // The peer reset the stream or the connection closed: nothing to answer.
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
    writer.releaseLock();
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
 * stream after handling). Rejects with ProtocolError if the peer answers with an error, and
 * NetworkError on timeout.
 */
export async function requestNoReply(connection: QUICConnection, msg: KnownSignal, opts: RequestOptions = {}): Promise<void> {
  const reply = await exchange(connection, msg, opts, (r) => r.type === 'error');
  if (reply?.type === 'error') throw new ProtocolError(`"${msg.type}" refused: ${reply.message} (${reply.code})`);
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
  try {
    const stream = connection.newStream('bidi');
    const writer = stream.writable.getWriter();
    await writer.write(encodeSignal(msg));
    await writer.close();
    // Nothing comes back; release our read side so the stream is fully closed.
    await stream.readable.cancel().catch(() => undefined);
    return true;
  } catch {
    return false;
  }
}
