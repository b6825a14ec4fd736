/**
 * A seam for call tests: a RoomCallSession that forwards to a real RelaySession, with some
 * methods replaced (to drop or alter what goes through it), instead of patching the session's
 * or the relay's internals.
 */
import type { RoomCallSession } from '../../core/client/call-session.js';
import type { RelaySession } from '../../core/client/relay-session.js';

export function forwardingSession(inner: RelaySession, overrides: Partial<Pick<RoomCallSession, 'joinRoom' | 'roomSignal' | 'onPush' | 'leave'>> = {}): RoomCallSession {
  return {
    joinRoom: overrides.joinRoom ?? ((room, opts) => inner.joinRoom(room, opts)),
    roomSignal: overrides.roomSignal ?? ((payload, to, opts) => inner.roomSignal(payload, to, opts)),
    onPush: overrides.onPush ?? ((listener) => inner.onPush(listener)),
    leave: overrides.leave ?? ((opts) => inner.leave(opts)),
    ping: (opts) => inner.ping(opts),
    mediaRtt: (timeoutMs) => inner.mediaRtt(timeoutMs),
    mediaPathStats: () => inner.mediaPathStats(),
    close: () => inner.close(),
    get closed() {
      return inner.closed;
    },
    get mediaTransport() {
      return inner.mediaTransport;
    },
  };
}
