/**
 * The WzpError family. Every failure a user can meet has its own class with a stable `name`
 * (callers test `err.name`, never the message) and a stable `code` that the CLI's base
 * command maps to a process exit code (docs/exit-codes.md). core/ never decides exit codes
 * itself beyond naming the kind of failure.
 */

export const ExitCode = {
  OK: 0,
  /** The command ran but its check failed (e.g. echo-test heard nothing back). */
  CHECK_FAILED: 1,
  /** Bad flags or arguments. */
  USAGE: 2,
  /** Config, identity or other local file problem. */
  CONFIG: 3,
  /** Relay/peer unreachable or timed out. */
  NETWORK_UNREACHABLE: 4,
  /** QUIC/TLS handshake or identity proof failed. */
  HANDSHAKE_FAILED: 5,
  /** A pinned relay presented a different fingerprint (possible MITM). */
  FINGERPRINT_MISMATCH: 6,
  /** NAT traversal failed (no direct path could be made). */
  NAT_TRAVERSAL_FAILED: 7,
  /** A plugin, codec, FEC scheme or strategy is missing or unusable. */
  PLUGIN: 8,
  /** A protocol violation from the far end (malformed frame we could not skip). */
  PROTOCOL: 9,
  /** The relay refused us: over one of its limits (connections, rate, room size). */
  REFUSED: 10,
  /** A 1:1 call: nobody is registered as the callee on the relay. */
  CALLEE_OFFLINE: 11,
  /** A 1:1 call: the callee declined. */
  CALL_DECLINED: 12,
  /** A 1:1 call: the callee is in another call. */
  CALLEE_BUSY: 13,
  /** A 1:1 call: the callee did not answer in time. */
  NO_ANSWER: 14,
  /** The relay requires a token and ours is missing, refused, or could not be checked. */
  AUTH_REFUSED: 15,
  /** The room is restricted on the relay (an ACL) and our identity is not on its list. */
  ACCESS_DENIED: 16,
  /** Interrupted by the user (SIGINT). */
  INTERRUPTED: 130,
  /** A bug in wzp. */
  INTERNAL: 70,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export interface WzpErrorOptions {
  suggestions?: string[];
  cause?: unknown;
}

export class WzpError extends Error {
  /** Exit code the CLI uses for this failure kind. */
  readonly code: ExitCodeValue;
  readonly suggestions: string[];

  constructor(message: string, code: ExitCodeValue, options: WzpErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.suggestions = options.suggestions ?? [];
    this.name = 'WzpError';
  }
}

/** Invalid user input that flag parsing could not catch (e.g. a malformed HOST:PORT). */
export class UsageError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.USAGE, options);
    this.name = 'UsageError';
  }
}

/** Local configuration or identity file unreadable, malformed or unsafe. */
export class ConfigError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.CONFIG, options);
    this.name = 'ConfigError';
  }
}

/** The far end did not answer in time, refused, or the network is down. */
export class NetworkError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.NETWORK_UNREACHABLE, options);
    this.name = 'NetworkError';
  }
}

/** An operation was aborted through its AbortSignal. */
export class AbortError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.INTERRUPTED, options);
    this.name = 'AbortError';
  }
}

/** TLS/QUIC handshake failed or a peer failed to prove its identity. */
export class HandshakeError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.HANDSHAKE_FAILED, options);
    this.name = 'HandshakeError';
  }
}

/** A relay's certificate fingerprint differs from the one pinned for it. */
export class FingerprintMismatchError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.FINGERPRINT_MISMATCH, options);
    this.name = 'FingerprintMismatchError';
  }
}

/** No direct path could be established through the NATs involved. */
export class NatTraversalError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.NAT_TRAVERSAL_FAILED, options);
    this.name = 'NatTraversalError';
  }
}

/** A codec / FEC scheme / NAT strategy is unknown, unavailable, or a plugin misbehaved. */
export class PluginError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.PLUGIN, options);
    this.name = 'PluginError';
  }
}

/** Two extensions tried to register under the same name. */
export class DuplicateRegistrationError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.PLUGIN, options);
    this.name = 'DuplicateRegistrationError';
  }
}

/** The far end sent something that violates the protocol. */
/**
 * The command ran and measured, but what it measured fails the check the user asked for
 * (`echo-test --min-snr`). It carries the measurements: the CLI prints them (and puts them
 * in the JSON error document's `result`) before the failure, so a CI job keeps its numbers.
 */
export class CheckFailedError extends WzpError {
  readonly result: object;
  constructor(message: string, result: object, options: WzpErrorOptions = {}) {
    super(message, ExitCode.CHECK_FAILED, options);
    this.name = 'CheckFailedError';
    this.result = result;
  }
}

/**
 * The relay refused service on purpose: a limit it enforces (too many connections from this
 * address, requests too fast, a full room). The message carries the relay's reason.
 */
export class RefusedError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.REFUSED, options);
    this.name = 'RefusedError';
  }
}

/**
 * The relay is draining (shutting down, docs/relay-operations.md): it refused a new join,
 * registration or call offer. Same exit code as any refusal; its own name so that a client
 * that knows other relays moves on instead of failing.
 */
export class RelayDrainingError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.REFUSED, options);
    this.name = 'RelayDrainingError';
  }
}

/** A 1:1 call (`wzp call --to`): nobody is registered as the callee on the relay. */
export class CalleeOfflineError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.CALLEE_OFFLINE, options);
    this.name = 'CalleeOfflineError';
  }
}

/** A 1:1 call: the callee declined it (a person said no, or its listener accepts only others). */
export class CallDeclinedError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.CALL_DECLINED, options);
    this.name = 'CallDeclinedError';
  }
}

/** A 1:1 call: the callee is in another call. */
export class CalleeBusyError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.CALLEE_BUSY, options);
    this.name = 'CalleeBusyError';
  }
}

/** A 1:1 call: the callee did not answer within the ring timeout. */
export class NoAnswerError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.NO_ANSWER, options);
    this.name = 'NoAnswerError';
  }
}

/**
 * The relay requires a token (`wzp relay --auth-url`) and ours is missing ("token required"),
 * was refused by its auth service, or could not be checked ("auth service unavailable").
 */
export class AuthError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.AUTH_REFUSED, options);
    this.name = 'AuthError';
  }
}

/** The room is restricted on the relay (its operator's ACL) and our identity is not on its list. */
export class RoomRestrictedError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.ACCESS_DENIED, options);
    this.name = 'RoomRestrictedError';
  }
}

export class ProtocolError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.PROTOCOL, options);
    this.name = 'ProtocolError';
  }
}

/** A bug: an invariant inside wzp did not hold. */
export class InternalError extends WzpError {
  constructor(message: string, options: WzpErrorOptions = {}) {
    super(message, ExitCode.INTERNAL, options);
    this.name = 'InternalError';
  }
}

/**
 * The one typed error every wire decoder throws. Decoders never let a RangeError or
 * TypeError escape: bad bytes from the network always become a DecodeError that the caller
 * drops and counts.
 */
export class DecodeError extends WzpError {
  /** Which format failed ('media-header', 'signal', ...). */
  readonly format: string;
  /** Machine-readable reason ('truncated', 'bad-version', 'too-large', ...). */
  readonly reason: string;
  constructor(format: string, reason: string, message: string) {
    super(`${format}: ${message}`, ExitCode.PROTOCOL);
    this.name = 'DecodeError';
    this.format = format;
    this.reason = reason;
  }
}

export function isWzpError(err: unknown): err is WzpError {
  return err instanceof WzpError;
}

/** Throws AbortError if the signal is already aborted. */
export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new AbortError('operation aborted', { cause: signal.reason });
}

/**
 * A readable message for anything thrown or used as a rejection reason. Streams and timers may
 * reject with null, undefined or a plain value, not an Error: reading `.message` from those
 * would throw a second, unrelated error.
 */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (err === null || err === undefined) return 'no reason given';
  if (typeof err === 'object' && typeof (err as { message?: unknown }).message === 'string') return (err as { message: string }).message;
  return String(err);
}
