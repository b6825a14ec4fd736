/**
 * WAV (RIFF/WAVE) reading and crash-safe streaming writing.
 *
 * Hand-written rather than taken from a library: wzp needs a writer that keeps the file valid
 * at every moment (a recording must survive Ctrl-C, a killed relay or a killed process), so the
 * RIFF and data sizes are rewritten after every appended chunk. The npm WAV packages build the
 * whole file in memory and write it once at the end. The reader is the small part that goes
 * with it: PCM 8/16/24/32-bit, IEEE float 32/64 and G.711 A-law / mu-law (telephony
 * recordings), plain or WAVE_FORMAT_EXTENSIBLE, any rate and channel count, mixed down to mono
 * 16-bit.
 */
import { closeSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import { ConfigError, DecodeError, errorMessage } from '../errors.js';

const FORMAT = 'wav';
const WAVE_FORMAT_PCM = 1;
const WAVE_FORMAT_IEEE_FLOAT = 3;
const WAVE_FORMAT_ALAW = 6;
const WAVE_FORMAT_MULAW = 7;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;
const HEADER_BYTES = 44;

export interface WavAudio {
  sampleRate: number;
  /** Mono, 16-bit (channels averaged). */
  samples: Int16Array;
  /** What the file held. */
  channels: number;
  bitsPerSample: number;
}

/** Parse a WAV file's bytes. Throws DecodeError naming what is wrong. */
export function decodeWav(bytes: Uint8Array): WavAudio {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (o: number) => String.fromCharCode(bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]);
  if (bytes.length < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') {
    throw new DecodeError(FORMAT, 'not-wav', 'not a RIFF/WAVE file');
  }
  let fmt: { format: number; channels: number; rate: number; bits: number } | undefined;
  let offset = 12;
  while (offset + 8 <= bytes.length) {
    const id = tag(offset);
    const size = view.getUint32(offset + 4, true);
    const body = offset + 8;
    if (id === 'fmt ') {
      if (size < 16 || body + size > bytes.length) throw new DecodeError(FORMAT, 'truncated', 'fmt chunk truncated');
      let format = view.getUint16(body, true);
      if (format === WAVE_FORMAT_EXTENSIBLE && size >= 26) format = view.getUint16(body + 24, true);
      fmt = {
        format,
        channels: view.getUint16(body + 2, true),
        rate: view.getUint32(body + 4, true),
        bits: view.getUint16(body + 14, true),
      };
    } else if (id === 'data') {
      if (!fmt) throw new DecodeError(FORMAT, 'bad-order', 'data chunk before fmt chunk');
      // A recording cut short may declare more data than is present: take what is there.
      const end = Math.min(bytes.length, body + size);
      return { ...toMono(view, body, end, fmt), sampleRate: fmt.rate, channels: fmt.channels, bitsPerSample: fmt.bits };
    }
    offset = body + size + (size & 1);
  }
  throw new DecodeError(FORMAT, 'no-data', 'no data chunk');
}

function toMono(
  view: DataView,
  start: number,
  end: number,
  fmt: { format: number; channels: number; rate: number; bits: number },
): { samples: Int16Array } {
  const { format, channels, bits } = fmt;
  if (channels < 1 || channels > 32 || fmt.rate < 1000 || fmt.rate > 384_000) {
    throw new DecodeError(FORMAT, 'bad-format', `unsupported layout: ${channels} channels at ${fmt.rate} Hz`);
  }
  const read = sampleReader(view, format, bits);
  const bytesPerSample = bits / 8;
  const frameBytes = bytesPerSample * channels;
  const frames = Math.floor((end - start) / frameBytes);
  const out = new Int16Array(frames);
  for (let i = 0; i < frames; i++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) sum += read(start + i * frameBytes + c * bytesPerSample);
    out[i] = Math.max(-32768, Math.min(32767, Math.round((sum / channels) * 32768)));
  }
  return { samples: out };
}

/** A function reading one sample at a byte offset as a float in [-1, 1). */
function sampleReader(view: DataView, format: number, bits: number): (o: number) => number {
  if (format === WAVE_FORMAT_PCM) {
    if (bits === 8) return (o) => (view.getUint8(o) - 128) / 128;
    if (bits === 16) return (o) => view.getInt16(o, true) / 32768;
    if (bits === 24) return (o) => ((view.getUint8(o) | (view.getUint8(o + 1) << 8) | (view.getInt8(o + 2) << 16)) / 8388608);
    if (bits === 32) return (o) => view.getInt32(o, true) / 2147483648;
  }
  if (format === WAVE_FORMAT_IEEE_FLOAT) {
    if (bits === 32) return (o) => view.getFloat32(o, true);
    if (bits === 64) return (o) => view.getFloat64(o, true);
  }
  if (bits === 8 && (format === WAVE_FORMAT_ALAW || format === WAVE_FORMAT_MULAW)) {
    const table = format === WAVE_FORMAT_ALAW ? ALAW_TABLE : MULAW_TABLE;
    return (o) => table[view.getUint8(o)];
  }
  const name = FORMAT_NAMES[format] ?? `format tag 0x${format.toString(16).padStart(4, '0')}`;
  throw new DecodeError(
    FORMAT,
    'bad-format',
    `unsupported sample format: ${name} with ${bits} bits (wzp reads PCM 8/16/24/32-bit, float 32/64-bit, 8-bit A-law and mu-law; convert with e.g. \`sox in.wav -b 16 out.wav\`)`,
  );
}

const FORMAT_NAMES: Record<number, string> = { 1: 'PCM', 2: 'Microsoft ADPCM', 3: 'IEEE float', 6: 'A-law', 7: 'mu-law', 0x11: 'IMA ADPCM', 0x55: 'MP3' };

/** G.711 mu-law byte -> linear sample in [-1, 1) (ITU-T G.711: bits inverted, bias 0x84). */
const MULAW_TABLE = Float64Array.from({ length: 256 }, (_, byte) => {
  const u = ~byte & 0xff;
  const magnitude = ((((u & 0x0f) << 3) + 0x84) << ((u >> 4) & 7)) - 0x84;
  return ((u & 0x80) !== 0 ? -magnitude : magnitude) / 32768;
});

/** G.711 A-law byte -> linear sample in [-1, 1) (even bits inverted; sign bit set = positive). */
const ALAW_TABLE = Float64Array.from({ length: 256 }, (_, byte) => {
  const a = byte ^ 0x55;
  const exponent = (a >> 4) & 7;
  const mantissa = a & 0x0f;
  const magnitude = exponent === 0 ? (mantissa << 4) + 8 : ((mantissa << 4) + 0x108) << (exponent - 1);
  return ((a & 0x80) !== 0 ? magnitude : -magnitude) / 32768;
});

/**
 * Read a local WAV file. Anything wrong with it is a ConfigError naming the file: a file the
 * user gave that is missing, unreadable or not a WAV we can read is a local-file problem
 * (exit 3, docs/exit-codes.md), not the far end breaking the protocol (the DecodeError the
 * bytes' parser throws for network input).
 */
export function readWavFile(path: string): WavAudio {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new ConfigError(`cannot read ${path}: ${errorMessage(err)}`, { cause: err });
  }
  try {
    return decodeWav(bytes);
  } catch (err) {
    if (!(err instanceof DecodeError)) throw err;
    throw new ConfigError(`${path} is not a WAV file wzp can read: ${err.message.replace(/^wav: /, '')}`, {
      cause: err,
      suggestions: ['give a RIFF/WAVE file: PCM 8/16/24/32-bit, float 32/64, A-law or mu-law, any rate and channel count (e.g. convert with `sox in.mp3 out.wav`)'],
    });
  }
}

/** Mono 16-bit PCM WAV bytes. */
export function encodeWav(samples: Int16Array, sampleRate: number): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + samples.length * 2);
  writeHeader(new DataView(out.buffer), sampleRate, samples.length * 2);
  out.set(new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength), HEADER_BYTES);
  return out;
}

function writeHeader(v: DataView, sampleRate: number, dataBytes: number): void {
  const ascii = (o: number, s: string) => {
    for (let i = 0; i < 4; i++) v.setUint8(o + i, s.charCodeAt(i));
  };
  ascii(0, 'RIFF');
  v.setUint32(4, 36 + dataBytes, true);
  ascii(8, 'WAVE');
  ascii(12, 'fmt ');
  v.setUint32(16, 16, true);
  v.setUint16(20, WAVE_FORMAT_PCM, true);
  v.setUint16(22, 1, true);
  v.setUint32(24, sampleRate, true);
  v.setUint32(28, sampleRate * 2, true);
  v.setUint16(32, 2, true);
  v.setUint16(34, 16, true);
  ascii(36, 'data');
  v.setUint32(40, dataBytes, true);
}

/**
 * Appends mono 16-bit samples to a WAV file, keeping it valid after every append: the data is
 * written first, then the header's sizes are updated. `sync()` forces both to disk.
 */
export class WavWriter {
  private readonly fd: number;
  private dataBytes = 0;
  private closed = false;
  private readonly header = new DataView(new ArrayBuffer(HEADER_BYTES));

  constructor(
    readonly path: string,
    readonly sampleRate: number,
  ) {
    try {
      this.fd = openSync(path, 'w');
    } catch (err) {
      throw new ConfigError(`cannot write ${path}: ${errorMessage(err)}`, { cause: err });
    }
    this.writeHeader();
  }

  get samplesWritten(): number {
    return this.dataBytes / 2;
  }

  append(samples: Int16Array): void {
    if (this.closed || samples.length === 0) return;
    writeSync(this.fd, new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength), 0, samples.byteLength, HEADER_BYTES + this.dataBytes);
    this.dataBytes += samples.byteLength;
    this.writeHeader();
  }

  sync(): void {
    if (!this.closed) fsyncSync(this.fd);
  }

  close(): void {
    if (this.closed) return;
    this.sync();
    closeSync(this.fd);
    this.closed = true;
  }

  private writeHeader(): void {
    writeHeader(this.header, this.sampleRate, this.dataBytes);
    writeSync(this.fd, new Uint8Array(this.header.buffer), 0, HEADER_BYTES, 0);
  }
}
