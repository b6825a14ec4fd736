/**
 * The full media header, version 1: 15 bytes, then an optional 5-byte quality report and an
 * optional extension block. All multi-byte fields are big-endian.
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-------+---+-+-+---------------+-------------------------------+
 * |version| T |Q|X|   codec id    |           sequence            |  0
 * +-------+---+-+-+---------------+-------------------------------+
 * |                           timestamp                           |  4
 * +-+-------------+---------------+-------------------------------+
 * |R| frame units |  fec scheme   |           fec block           |  8
 * +-+-------------+---------------+---------------+---------------+
 * |  fec symbol   |     fec k     |     fec r     |                  12
 * +---------------+---------------+---------------+
 *
 * Quality report, present when Q = 1 (5 bytes):
 * +---------------+-------------------------------+---------------+
 * | fraction lost |            rtt ms             | jitter (high) |
 * +---------------+-------------------------------+---------------+
 * | jitter (low)  |
 * +---------------+
 *
 * Extension block, present when X = 1 (1 + L bytes, 1 <= L <= 255):
 * +---------------+---------------+---------------+---------------
 * |  block len L  |    ext id     |   data len N  |  N data bytes ...  (repeated)
 * +---------------+---------------+---------------+---------------
 * ```
 *
 * - version (4 bits): 1. Any other value is DecodeError 'bad-version'.
 * - T, tier (2 bits): QualityTier; 3 is reserved and rejected.
 * - Q: a quality report follows the fixed part. X: an extension block follows (after the
 *   report if both are present).
 * - codec id: 0-254 (255 is reserved and rejected).
 * - sequence: u16, wrapping. timestamp: u32 in 48 kHz samples, wrapping.
 * - R: this packet is an FEC repair packet.
 * - frame units: the frame duration in units of 2.5 ms (120 samples), 1-127.
 * - fec scheme / block / symbol / k / r: the FEC scheme id, block id (u16, wrapping), the
 *   packet's index within the block, and the block geometry (source and repair counts).
 *   They are carried verbatim; their consistency is the FEC pipeline's business.
 *
 * Every field has exactly one encoding and reserved values are rejected, so a decoded
 * header re-encodes to the very same bytes (the header is authenticated as AEAD associated
 * data). New fields arrive as extensions (unknown ids are kept and re-encoded as they came)
 * or as a new version.
 */

import { DecodeError, InternalError } from '../errors.js';
import { FULL_HEADER_VERSION_SHIFT, assembleDatagram, checkDatagramSize } from './datagram.js';

const FORMAT = 'media-header';

export const MEDIA_HEADER_VERSION = 1;

export const QualityTier = { GOOD: 0, DEGRADED: 1, CATASTROPHIC: 2 } as const;
export type QualityTier = (typeof QualityTier)[keyof typeof QualityTier];

/** The frame duration is carried in units of 2.5 ms: 120 samples at 48 kHz. */
export const FRAME_UNIT_SAMPLES = 120;
export const MAX_FRAME_UNITS = 127;
export const MAX_CODEC_ID = 254;

export const OFFSET_FLAGS = 0;
export const OFFSET_CODEC_ID = 1;
export const OFFSET_SEQUENCE = 2;
export const OFFSET_TIMESTAMP = 4;
export const OFFSET_FRAME = 8;
export const OFFSET_FEC_SCHEME = 9;
export const OFFSET_FEC_BLOCK = 10;
export const OFFSET_FEC_SYMBOL = 12;
export const OFFSET_FEC_K = 13;
export const OFFSET_FEC_R = 14;
export const FIXED_HEADER_BYTES = 15;

/** Offsets inside the quality report. */
export const REPORT_OFFSET_FRACTION_LOST = 0;
export const REPORT_OFFSET_RTT = 1;
export const REPORT_OFFSET_JITTER = 3;
export const QUALITY_REPORT_BYTES = 5;

/** Largest extension block content (the block length is one byte). */
export const MAX_EXTENSION_BLOCK_BYTES = 255;
/** Bytes in front of each extension's data: id and data length. */
export const EXTENSION_ELEMENT_OVERHEAD = 2;
export const MAX_MEDIA_HEADER_BYTES = FIXED_HEADER_BYTES + QUALITY_REPORT_BYTES + 1 + MAX_EXTENSION_BLOCK_BYTES;

const TIER_SHIFT = 2;
const TIER_MASK = 0b11;
const REPORT_FLAG = 0b10;
const EXTENSION_FLAG = 0b01;
const REPAIR_FLAG = 0x80;
const FRAME_UNITS_MASK = 0x7f;

const U8_MAX = 0xff;
const U16_MAX = 0xffff;
const U32_MAX = 0xffff_ffff;

export interface FecInfo {
  /** FEC scheme id (the FecSchemeFactory's schemeId), 0-255. */
  schemeId: number;
  /** FEC block id, u16, wrapping. */
  block: number;
  /** Index of this packet within its block, 0-255. */
  symbol: number;
  /** Whether this is a repair packet. */
  repair: boolean;
  /** Source packets per block, 0-255. */
  k: number;
  /** Repair packets per block, 0-255. */
  r: number;
}

/** What a receiver measured about the stream it receives, sent back piggybacked. */
export interface QualityReport {
  /** Lost / expected packets in 1/256 units, 0-255 (RTCP's "fraction lost"). */
  fractionLost: number;
  /** Round-trip time in ms, 0-65535 (saturated). */
  rttMs: number;
  /** Interarrival jitter in ms, 0-65535 (saturated). */
  jitterMs: number;
}

export interface HeaderExtension {
  /** Extension id, 0-255. */
  id: number;
  /** At most 253 bytes (an extension block holds 255 bytes including each id and length). */
  data: Uint8Array;
}

export interface MediaHeader {
  version: typeof MEDIA_HEADER_VERSION;
  /** 0-254. */
  codecId: number;
  tier: QualityTier;
  /** u16, wrapping. */
  sequence: number;
  /** u32 in 48 kHz samples, wrapping. */
  timestamp: number;
  /** Samples per frame at 48 kHz: a multiple of 120 (2.5 ms), 120-15240. */
  frameSamples: number;
  fec: FecInfo;
  /** Present only on packets that carry a quality report. */
  report?: QualityReport;
  /** Header extensions in wire order; empty when the header has none. */
  extensions: readonly HeaderExtension[];
}

export interface DecodedMediaHeader {
  header: MediaHeader;
  /** Bytes the header occupies at the start of the buffer. */
  headerLength: number;
}

export interface DecodedMediaPacket {
  header: MediaHeader;
  /** The bytes after the header: a view into the decoded buffer, not a copy. */
  payload: Uint8Array;
}

/** Quantizes raw measurements into a QualityReport, saturating out-of-range values. */
export function quantizeQualityReport(measured: { lossRatio: number; rttMs: number; jitterMs: number }): QualityReport {
  return {
    fractionLost: saturate(measured.lossRatio * 256, U8_MAX),
    rttMs: saturate(measured.rttMs, U16_MAX),
    jitterMs: saturate(measured.jitterMs, U16_MAX),
  };
}

/** Total encoded size of `header`, including its report and extensions. */
export function mediaHeaderLength(header: MediaHeader): number {
  let length = FIXED_HEADER_BYTES;
  if (header.report !== undefined) length += QUALITY_REPORT_BYTES;
  if (header.extensions.length > 0) length += 1 + extensionBlockLength(header.extensions);
  return length;
}

/** Encodes a header. Throws InternalError if any field is out of range. */
export function encodeMediaHeader(header: MediaHeader): Uint8Array {
  assertValidHeader(header);
  const bytes = new Uint8Array(mediaHeaderLength(header));
  const view = new DataView(bytes.buffer);
  writeFixedPart(view, header);
  let offset = FIXED_HEADER_BYTES;
  if (header.report !== undefined) {
    writeReport(view, offset, header.report);
    offset += QUALITY_REPORT_BYTES;
  }
  if (header.extensions.length > 0) writeExtensions(bytes, offset, header.extensions);
  return bytes;
}

/**
 * Decodes the header at the start of `buf` (anything after it is payload). Throws
 * DecodeError: 'bad-version', 'truncated', 'bad-field' (a reserved value), 'bad-extension'.
 */
export function decodeMediaHeader(buf: Uint8Array): DecodedMediaHeader {
  requireBytes(buf, 1);
  const flags = buf[OFFSET_FLAGS];
  const version = flags >>> FULL_HEADER_VERSION_SHIFT;
  if (version !== MEDIA_HEADER_VERSION) throw new DecodeError(FORMAT, 'bad-version', `unknown header version ${version}`);
  requireBytes(buf, FIXED_HEADER_BYTES);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const header = readFixedPart(view);
  let offset = FIXED_HEADER_BYTES;
  if (flags & REPORT_FLAG) {
    requireBytes(buf, offset + QUALITY_REPORT_BYTES);
    header.report = readReport(view, offset);
    offset += QUALITY_REPORT_BYTES;
  }
  if (flags & EXTENSION_FLAG) {
    const block = readExtensions(buf, offset);
    header.extensions = block.extensions;
    offset = block.end;
  }
  return { header, headerLength: offset };
}

/** Header followed by payload, as one datagram. Throws InternalError if it would not fit. */
export function encodeMediaPacket(header: MediaHeader, payload: Uint8Array): Uint8Array {
  return assembleDatagram(encodeMediaHeader(header), payload);
}

/** Splits a datagram into its header and payload. Throws DecodeError (also 'too-large'). */
export function decodeMediaPacket(buf: Uint8Array): DecodedMediaPacket {
  checkDatagramSize(buf, FORMAT);
  const { header, headerLength } = decodeMediaHeader(buf);
  return { header, payload: buf.subarray(headerLength) };
}

function writeFixedPart(view: DataView, header: MediaHeader): void {
  let flags = (header.version << FULL_HEADER_VERSION_SHIFT) | (header.tier << TIER_SHIFT);
  if (header.report !== undefined) flags |= REPORT_FLAG;
  if (header.extensions.length > 0) flags |= EXTENSION_FLAG;
  view.setUint8(OFFSET_FLAGS, flags);
  view.setUint8(OFFSET_CODEC_ID, header.codecId);
  view.setUint16(OFFSET_SEQUENCE, header.sequence);
  view.setUint32(OFFSET_TIMESTAMP, header.timestamp);
  const frameUnits = header.frameSamples / FRAME_UNIT_SAMPLES;
  view.setUint8(OFFSET_FRAME, (header.fec.repair ? REPAIR_FLAG : 0) | frameUnits);
  view.setUint8(OFFSET_FEC_SCHEME, header.fec.schemeId);
  view.setUint16(OFFSET_FEC_BLOCK, header.fec.block);
  view.setUint8(OFFSET_FEC_SYMBOL, header.fec.symbol);
  view.setUint8(OFFSET_FEC_K, header.fec.k);
  view.setUint8(OFFSET_FEC_R, header.fec.r);
}

/** Reads the fixed part; the caller has checked the version and the length. */
function readFixedPart(view: DataView): MediaHeader {
  const tier = (view.getUint8(OFFSET_FLAGS) >>> TIER_SHIFT) & TIER_MASK;
  if (tier > QualityTier.CATASTROPHIC) throw new DecodeError(FORMAT, 'bad-field', `reserved quality tier ${tier}`);
  const codecId = view.getUint8(OFFSET_CODEC_ID);
  if (codecId > MAX_CODEC_ID) throw new DecodeError(FORMAT, 'bad-field', `reserved codec id ${codecId}`);
  const frameByte = view.getUint8(OFFSET_FRAME);
  const frameUnits = frameByte & FRAME_UNITS_MASK;
  if (frameUnits === 0) throw new DecodeError(FORMAT, 'bad-field', 'zero frame duration');
  return {
    version: MEDIA_HEADER_VERSION,
    codecId,
    tier: tier as QualityTier,
    sequence: view.getUint16(OFFSET_SEQUENCE),
    timestamp: view.getUint32(OFFSET_TIMESTAMP),
    frameSamples: frameUnits * FRAME_UNIT_SAMPLES,
    fec: {
      schemeId: view.getUint8(OFFSET_FEC_SCHEME),
      block: view.getUint16(OFFSET_FEC_BLOCK),
      symbol: view.getUint8(OFFSET_FEC_SYMBOL),
      repair: (frameByte & REPAIR_FLAG) !== 0,
      k: view.getUint8(OFFSET_FEC_K),
      r: view.getUint8(OFFSET_FEC_R),
    },
    extensions: [],
  };
}

function writeReport(view: DataView, offset: number, report: QualityReport): void {
  view.setUint8(offset + REPORT_OFFSET_FRACTION_LOST, report.fractionLost);
  view.setUint16(offset + REPORT_OFFSET_RTT, report.rttMs);
  view.setUint16(offset + REPORT_OFFSET_JITTER, report.jitterMs);
}

function readReport(view: DataView, offset: number): QualityReport {
  return {
    fractionLost: view.getUint8(offset + REPORT_OFFSET_FRACTION_LOST),
    rttMs: view.getUint16(offset + REPORT_OFFSET_RTT),
    jitterMs: view.getUint16(offset + REPORT_OFFSET_JITTER),
  };
}

function extensionBlockLength(extensions: readonly HeaderExtension[]): number {
  let length = 0;
  for (const extension of extensions) length += EXTENSION_ELEMENT_OVERHEAD + extension.data.length;
  return length;
}

function writeExtensions(bytes: Uint8Array, offset: number, extensions: readonly HeaderExtension[]): void {
  bytes[offset] = extensionBlockLength(extensions);
  let pos = offset + 1;
  for (const { id, data } of extensions) {
    bytes[pos] = id;
    bytes[pos + 1] = data.length;
    bytes.set(data, pos + EXTENSION_ELEMENT_OVERHEAD);
    pos += EXTENSION_ELEMENT_OVERHEAD + data.length;
  }
}

/** Reads an extension block at `offset`; the extension data are copies, not views. */
function readExtensions(buf: Uint8Array, offset: number): { extensions: HeaderExtension[]; end: number } {
  requireBytes(buf, offset + 1);
  const blockLength = buf[offset];
  if (blockLength === 0) throw new DecodeError(FORMAT, 'bad-extension', 'empty extension block');
  const end = offset + 1 + blockLength;
  requireBytes(buf, end);
  const extensions: HeaderExtension[] = [];
  let pos = offset + 1;
  while (pos < end) {
    if (pos + EXTENSION_ELEMENT_OVERHEAD > end) throw new DecodeError(FORMAT, 'bad-extension', 'extension element overruns its block');
    const dataEnd = pos + EXTENSION_ELEMENT_OVERHEAD + buf[pos + 1];
    if (dataEnd > end) throw new DecodeError(FORMAT, 'bad-extension', 'extension data overruns its block');
    extensions.push({ id: buf[pos], data: buf.slice(pos + EXTENSION_ELEMENT_OVERHEAD, dataEnd) });
    pos = dataEnd;
  }
  return { extensions, end };
}

function requireBytes(buf: Uint8Array, length: number): void {
  if (buf.length < length) throw new DecodeError(FORMAT, 'truncated', `need ${length} bytes, have ${buf.length}`);
}

function assertValidHeader(header: MediaHeader): void {
  if (header.version !== MEDIA_HEADER_VERSION) invalid('version', header.version, `${MEDIA_HEADER_VERSION}`);
  checkInteger('codecId', header.codecId, MAX_CODEC_ID);
  checkInteger('tier', header.tier, QualityTier.CATASTROPHIC);
  checkInteger('sequence', header.sequence, U16_MAX);
  checkInteger('timestamp', header.timestamp, U32_MAX);
  const units = header.frameSamples / FRAME_UNIT_SAMPLES;
  if (!Number.isInteger(units) || units < 1 || units > MAX_FRAME_UNITS) {
    invalid('frameSamples', header.frameSamples, `a multiple of ${FRAME_UNIT_SAMPLES} up to ${MAX_FRAME_UNITS * FRAME_UNIT_SAMPLES}`);
  }
  checkFec(header.fec);
  if (header.report !== undefined) checkReport(header.report);
  checkExtensions(header.extensions);
}

function checkFec(fec: FecInfo): void {
  checkInteger('fec.schemeId', fec.schemeId, U8_MAX);
  checkInteger('fec.block', fec.block, U16_MAX);
  checkInteger('fec.symbol', fec.symbol, U8_MAX);
  if (typeof fec.repair !== 'boolean') invalid('fec.repair', fec.repair, 'a boolean');
  checkInteger('fec.k', fec.k, U8_MAX);
  checkInteger('fec.r', fec.r, U8_MAX);
}

function checkReport(report: QualityReport): void {
  checkInteger('report.fractionLost', report.fractionLost, U8_MAX);
  checkInteger('report.rttMs', report.rttMs, U16_MAX);
  checkInteger('report.jitterMs', report.jitterMs, U16_MAX);
}

function checkExtensions(extensions: readonly HeaderExtension[]): void {
  for (const extension of extensions) checkInteger('extension id', extension.id, U8_MAX);
  const blockLength = extensionBlockLength(extensions);
  if (blockLength > MAX_EXTENSION_BLOCK_BYTES) {
    invalid('extensions', `${blockLength} bytes`, `at most ${MAX_EXTENSION_BLOCK_BYTES} bytes including ids and lengths`);
  }
}

function checkInteger(field: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) invalid(field, value, `an integer 0-${max}`);
}

function invalid(field: string, value: unknown, expected: string): never {
  throw new InternalError(`media header: ${field} must be ${expected}, got ${String(value)}`);
}

function saturate(value: number, max: number): number {
  if (Number.isNaN(value)) return 0;
  return Math.min(max, Math.max(0, Math.round(value)));
}
