/** The wire formats: media datagrams (full header, mini header, trunk), signalling and call candidates, and the packets beside QUIC on the shared socket (media path, room source-id tag, path checks). */
export { MAX_DATAGRAM_BYTES, TRUNK_MARKER, type DatagramKind, datagramKind, isMiniHeader } from './datagram.js';
export * from './media-header.js';
export * from './mini-header.js';
export * from './trunk.js';
export * from './signal.js';
export * from './candidate.js';
export * from './media-path.js';
export * from './room-source.js';
export * from './path-check.js';
