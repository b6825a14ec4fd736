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

function kind(name: string, code: ExitCodeValue) {
  const cls = class extends WzpError {
    constructor(message: string, options: WzpErrorOptions = {}) {
      super(message, code, options);
      this.name = name;
    }
  };
  Object.defineProperty(cls, 'name', { value: name });
  return cls;
}

/** Invalid user input that flag parsing could not catch (e.g. a malformed HOST:PORT). */
export const UsageError = kind('UsageError', ExitCode.USAGE);
/** Local configuration or identity file unreadable, malformed or unsafe. */
export const ConfigError = kind('ConfigError', ExitCode.CONFIG);
/** The far end did not answer in time, refused, or the network is down. */
export const NetworkError = kind('NetworkError', ExitCode.NETWORK_UNREACHABLE);
/** An operation was aborted through its AbortSignal. */
export const AbortError = kind('AbortError', ExitCode.INTERRUPTED);
/** TLS/QUIC handshake failed or a peer failed to prove its identity. */
export const HandshakeError = kind('HandshakeError', ExitCode.HANDSHAKE_FAILED);
/** A relay's certificate fingerprint differs from the one pinned for it. */
export const FingerprintMismatchError = kind('FingerprintMismatchError', ExitCode.FINGERPRINT_MISMATCH);
/** No direct path could be established through the NATs involved. */
export const NatTraversalError = kind('NatTraversalError', ExitCode.NAT_TRAVERSAL_FAILED);
/** A codec / FEC scheme / NAT strategy is unknown, unavailable, or a plugin misbehaved. */
export const PluginError = kind('PluginError', ExitCode.PLUGIN);
/** Two extensions tried to register under the same name. */
export const DuplicateRegistrationError = kind('DuplicateRegistrationError', ExitCode.PLUGIN);
/** The far end sent something that violates the protocol. */
export const ProtocolError = kind('ProtocolError', ExitCode.PROTOCOL);
/** A bug: an invariant inside wzp did not hold. */
export const InternalError = kind('InternalError', ExitCode.INTERNAL);

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
