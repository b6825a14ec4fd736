/** The wire formats: media datagrams (full header, mini header, trunk), signalling and call candidates. */
export { MAX_DATAGRAM_BYTES, TRUNK_MARKER, type DatagramKind, datagramKind, isMiniHeader } from './datagram.js';
export * from './media-header.js';
export * from './mini-header.js';
export * from './trunk.js';
export * from './signal.js';
export * from './candidate.js';
