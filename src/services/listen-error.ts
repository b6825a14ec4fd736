/**
 * Say why an address could not be listened on. The transport reports any bind failure as one
 * NetworkError with a "another process using that port?" hint, which is wrong for two of the
 * three usual causes: an address that is not on this machine (EADDRNOTAVAIL) and a port below
 * 1024 without the privilege to bind it (EACCES). The system's error code is in the cause chain.
 */
import { NetworkError, errorMessage, isWzpError } from '../../core/errors.js';

/** The first Node system error code (`EADDRINUSE`, ...) in `err` or its causes. */
export function systemErrorCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e !== null && typeof e === 'object' && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code;
  }
  return undefined;
}

/** A listen failure reworded for its cause; other errors pass through unchanged. */
export function explainListenError(err: unknown, listen: string): unknown {
  if (!isWzpError(err) || err.name !== 'NetworkError') return err;
  const code = systemErrorCode(err);
  const host = listen.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  const port = /:(\d+)$/.exec(listen)?.[1] ?? '';
  switch (code) {
    case 'EADDRNOTAVAIL':
      return new NetworkError(`cannot listen on ${listen}: ${host} is not an address of this machine (EADDRNOTAVAIL)`, {
        cause: err,
        suggestions: ["listen on one of this machine's addresses (`ip addr` lists them), or on 0.0.0.0 / [::] for all of them"],
      });
    case 'EACCES':
    case 'EPERM':
      return new NetworkError(`cannot listen on ${listen}: port ${port} is a privileged port (below 1024) and this process may not bind it (${code})`, {
        cause: err,
        suggestions: ['pick a port of 1024 or above with --listen, e.g. 0.0.0.0:4433', 'or give the process the right: setcap cap_net_bind_service=+ep on node'],
      });
    case 'EADDRINUSE':
      return new NetworkError(`cannot listen on ${listen}: another process is using that port (EADDRINUSE)`, {
        cause: err,
        suggestions: ['stop the other process (`ss -lunp` shows it), or pick another port with --listen'],
      });
    default:
      return code === undefined ? err : new NetworkError(`cannot listen on ${listen}: ${errorMessage(err)} (${code})`, { cause: err, suggestions: err.suggestions });
  }
}
