/** WAV files in formats wzp itself never writes (24-bit, stereo, G.711...), for reader tests. */

/** A WAV file with format tag `format` (1 PCM, 3 float, 6 A-law, 7 mu-law), `channels` x `bits`, and `data` as its data chunk. */
export function wavBytes(format: number, channels: number, rate: number, bits: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(44 + data.length);
  const v = new DataView(out.buffer);
  const ascii = (o: number, s: string) => [...s].forEach((c, i) => (out[o + i] = c.charCodeAt(0)));
  ascii(0, 'RIFF');
  v.setUint32(4, 36 + data.length, true);
  ascii(8, 'WAVE');
  ascii(12, 'fmt ');
  v.setUint32(16, 16, true);
  v.setUint16(20, format, true);
  v.setUint16(22, channels, true);
  v.setUint32(24, rate, true);
  v.setUint32(28, (rate * channels * bits) / 8, true);
  v.setUint16(32, (channels * bits) / 8, true);
  v.setUint16(34, bits, true);
  ascii(36, 'data');
  v.setUint32(40, data.length, true);
  out.set(data, 44);
  return out;
}

/** A 24-bit PCM stereo WAV of a `hz` tone at `rate` (half of full scale, both channels). */
export function stereoTone24(rate: number, hz: number, seconds: number): Uint8Array {
  const frames = Math.round(rate * seconds);
  const data = new Uint8Array(frames * 6);
  for (let n = 0; n < frames; n++) {
    const s = Math.round(0.5 * 0x7fffff * Math.sin((2 * Math.PI * hz * n) / rate));
    for (let c = 0; c < 2; c++) for (let b = 0; b < 3; b++) data[n * 6 + c * 3 + b] = (s >> (8 * b)) & 0xff;
  }
  return wavBytes(1, 2, rate, 24, data);
}
