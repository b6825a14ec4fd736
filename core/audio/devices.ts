/**
 * Sound-card input and output for calls: a small layer over naudiodon (PortAudio).
 *
 * naudiodon is a native module, loaded lazily on first use, so wzp runs (without `--mic`) on
 * machines where it is missing or broken; `audioAvailability()` says why audio is unusable.
 *
 * Both directions speak the pipeline format (mono, signed 16-bit, 48 kHz by default) and hide
 * what the device really runs at: if it cannot do that rate or mono, the stream is opened at a
 * rate with an integer ratio and/or in stereo, and converted here (core/media/resample.ts,
 * channel averaging / duplication).
 *
 * Timing model. The device's clock drives everything:
 * - Input: PortAudio delivers one 5 ms period per callback; naudiodon queues it natively
 *   (INPUT_NATIVE_QUEUE_MS deep, so a stalled event loop does not block the audio thread)
 *   and the stream's 'data' events move it into a bounded ring. `read()` takes whole frames
 *   from the ring and never waits. When the caller falls behind, the oldest audio is dropped.
 * - Output: `write()` appends to a bounded ring and never waits. A pump keeps exactly one
 *   period in flight to naudiodon, whose native queue is OUTPUT_NATIVE_QUEUE_PERIODS deep;
 *   each completed write pulls the next period from the ring, or silence when the caller has
 *   not written enough (an underrun). The device is fed even when the caller is silent, and
 *   audio written reaches PortAudio after ~20 ms of local queueing plus the ring's content.
 *
 * Each open stream keeps one libuv thread-pool thread blocked inside naudiodon (a pending
 * native read or write); see docs/audio.md.
 */
import type { AudioOptions, DeviceInfo, IoStreamRead, IoStreamWrite } from 'naudiodon';
import { ConfigError, UsageError } from '../errors.js';
import { PIPELINE_SAMPLE_RATE, type Availability } from '../media/codec-types.js';
import { createResampler, type Resampler } from '../media/resample.js';
import { SampleRing } from './ring-buffer.js';

type Naudiodon = typeof import('naudiodon');

/**
 * PortAudio callback period. 5 ms: on the virtual devices a 10 ms period costs ~25 ms more
 * output-to-input latency (PortAudio sizes the ALSA buffer in periods) for ~2% less CPU.
 */
const PERIOD_MS = 5;
/** How much captured audio naudiodon may hold natively before its audio thread would block. */
const INPUT_NATIVE_QUEUE_MS = 320;
/**
 * Periods queued natively ahead of the output device: the slack that absorbs event-loop
 * stalls (15 ms), and the floor of the output latency.
 */
const OUTPUT_NATIVE_QUEUE_PERIODS = 3;
/** Default bound of the input and output rings. */
const DEFAULT_BUFFER_MS = 200;
/** How long `AudioOutput.close()` lets queued audio play before stopping. */
const OUTPUT_DRAIN_MS = 250;
/** A native stop that takes longer than this is abandoned (it hangs if the sound server died). */
const CLOSE_TIMEOUT_MS = 1000;
/**
 * A stream that shows no sign of life for this long is failed (device unplugged, server gone).
 * Above the ~2 s a PulseAudio null sink can take to deliver its first audio (docs/audio.md).
 */
const STALL_MS = 3000;
const STALL_CHECK_MS = 500;
/** Device rates tried, after the requested one, when the device refuses it. */
const FALLBACK_RATES = [48_000, 96_000, 24_000, 16_000, 32_000, 8_000];
const CHANNEL_CHOICES = [1, 2];
const SAMPLE_FORMAT_INT16 = 16;
/**
 * PortAudio/naudiodon messages that mean "try another rate or channel count". (naudiodon
 * prefixes every Pa_IsFormatSupported failure with "Format not supported", including device
 * failures such as "Illegal combination of I/O devices", so the prefix alone says nothing.)
 */
const FORMAT_REJECTED = /Invalid sample rate|Invalid number of channels|Sample format not supported|Channel count exceeds/i;

const INSTALL_HINT =
  'naudiodon is a native module: make sure its install script ran (npm 11: `npm install-scripts approve naudiodon`, then `npm rebuild naudiodon`) and that ALSA (libasound2) is installed';
const NO_DEVICE_HINT =
  'check that a sound card or a sound server (PulseAudio/PipeWire) is present; on a headless machine or in CI, `scripts/virtual-audio.sh start` provides a virtual microphone and speaker';

export interface AudioDeviceInfo {
  /** PortAudio device index: valid until the device list changes. */
  id: number;
  name: string;
  /** PortAudio host API ('ALSA', 'CoreAudio', 'WASAPI', ...). */
  hostApi: string;
  maxInputChannels: number;
  maxOutputChannels: number;
  defaultSampleRate: number;
  isDefaultInput: boolean;
  isDefaultOutput: boolean;
}

export interface OpenInputOptions {
  /** Device index, or a case-insensitive substring of its name. Default: the system default. */
  deviceId?: number | string;
  /** Rate of the samples `read()` returns. Default PIPELINE_SAMPLE_RATE. */
  sampleRate?: number;
  /** Samples per `read()` frame (960 = 20 ms at 48 kHz). */
  frameSamples: number;
  /** Most audio buffered for the caller before the oldest is dropped. Default 200 ms. */
  bufferMs?: number;
}

export interface OpenOutputOptions {
  deviceId?: number | string;
  /** Rate of the samples given to `write()`. Default PIPELINE_SAMPLE_RATE. */
  sampleRate?: number;
  /** Most audio queued for playback before the oldest is dropped. Default 200 ms. */
  bufferMs?: number;
}

/** What was actually opened. */
export interface OpenedDevice {
  /** Device index, or undefined for the system default. */
  id: number | undefined;
  name: string;
  /** The device-side format (conversion to and from the caller's format happens inside). */
  sampleRate: number;
  channels: number;
  /** Time PortAudio took to initialise and open the device, ms. */
  openMs: number;
}

export interface AudioInput {
  readonly device: OpenedDevice;
  readonly frameSamples: number;
  /** Exactly one frame of mono samples if a whole frame is buffered, else undefined. Never waits. */
  read(): Int16Array | undefined;
  /**
   * Exactly `count` samples, for a consumer on its own clock (a call reads 10 ms per tick):
   * what is buffered, and silence for any shortfall (the device is behind). Never waits.
   */
  readSamples(count: number): Int16Array;
  /** Buffered samples. */
  available(): number;
  /** Times the buffer overflowed because the caller read too slowly. */
  readonly overruns: number;
  /** Samples discarded by those overflows. */
  readonly dropped: number;
  /** Set when the device stream failed; no more audio will arrive. */
  readonly error: Error | undefined;
  /** Stop capturing. Safe to call more than once. */
  close(): Promise<void>;
}

export interface AudioOutput {
  readonly device: OpenedDevice;
  /** Queue mono samples for playback. Never waits; drops the oldest queued audio when full. */
  write(pcm: Int16Array): void;
  /** Samples written but not yet handed to the device. */
  queuedSamples(): number;
  /** Times the device needed audio and the queue had run dry while playing. */
  readonly underruns: number;
  /** Samples discarded because the queue was full. */
  readonly dropped: number;
  /** Set when the device stream failed; writes are then discarded. */
  readonly error: Error | undefined;
  /** Let queued audio play (briefly), then stop. Safe to call more than once. */
  close(): Promise<void>;
}

let naudiodon: Promise<Naudiodon> | undefined;

/**
 * Runs a synchronous PortAudio call with the native libraries' stdout and stderr chatter
 * dropped (./stdout-guard.ts quietNative: without a sound card ALSA prints ~100 lines per
 * initialisation); set when naudiodon is loaded, and a plain call until then.
 */
let quiet: <T>(call: () => T) => T = (call) => call();

function loadNaudiodon(): Promise<Naudiodon> {
  // The guard (koffi) is loaded with naudiodon, not at start-up: only device runs need it.
  naudiodon ??= import('./stdout-guard.js')
    .then((guard) => {
      quiet = guard.quietNative;
    })
    .catch(() => undefined)
    .then(() => import('naudiodon'))
    .then((mod) => (mod as { default?: Naudiodon }).default ?? mod);
  return naudiodon;
}

/** Native stops that did not finish: each leaves a thread-pool thread blocked for good. */
let hungStops = 0;

/**
 * True while a closed stream's native stop is stuck (its device or sound server died
 * mid-stream, and naudiodon waits forever for the dead audio thread). Node cannot end such a
 * process by itself, nor through process.exit(), which waits for every thread-pool thread:
 * only a signal (SIGKILL) or `_exit` ends it. See docs/audio.md.
 */
export function nativeAudioStuck(): boolean {
  return hungStops > 0;
}

/** Whether audio devices can be used here, and if not, why and what to do. */
export async function audioAvailability(): Promise<Availability> {
  let nd: Naudiodon;
  try {
    nd = await loadNaudiodon();
  } catch (err) {
    return { available: false, reason: `the audio module (naudiodon) failed to load: ${firstLine(err)}`, hint: INSTALL_HINT };
  }
  try {
    if (quiet(() => nd.getDevices()).length === 0) {
      return { available: false, reason: 'PortAudio found no audio devices', hint: NO_DEVICE_HINT };
    }
  } catch (err) {
    return { available: false, reason: `PortAudio failed: ${firstLine(err)}`, hint: NO_DEVICE_HINT };
  }
  return { available: true };
}

/** All devices PortAudio sees, with the system defaults marked. */
export async function listDevices(): Promise<AudioDeviceInfo[]> {
  const nd = await requireNaudiodon();
  return nativeCall('list audio devices', () => {
    const { defaultHostAPI, HostAPIs } = quiet(() => nd.getHostAPIs());
    const defaults = HostAPIs.find((api) => api.id === defaultHostAPI);
    return quiet(() => nd.getDevices()).map((d) => toDeviceInfo(d, defaults?.defaultInput, defaults?.defaultOutput));
  });
}

/** Open a capture device delivering mono frames at `sampleRate`. */
export async function openInput(options: OpenInputOptions): Promise<AudioInput> {
  const sampleRate = checkedRate(options.sampleRate);
  if (!Number.isInteger(options.frameSamples) || options.frameSamples <= 0) {
    throw new UsageError(`audio input: frameSamples must be a positive integer, got ${options.frameSamples}`);
  }
  const nd = await requireNaudiodon();
  const device = resolveDevice(nd, options.deviceId, 'input');
  const started = performance.now();
  const { stream, format } = openNegotiated(device, sampleRate, 'input', (rate, channels) =>
    quiet(() => nd.AudioIO({ inOptions: streamOptions(device.id, rate, channels, INPUT_NATIVE_QUEUE_MS / PERIOD_MS) })),
  );
  const opened = { ...device, ...format, openMs: performance.now() - started };
  const input = new DeviceInput(stream, opened, sampleRate, options.frameSamples, options.bufferMs ?? DEFAULT_BUFFER_MS);
  await startStream(stream, () => input.close(), device.name);
  return input;
}

/** Open a playback device taking mono samples at `sampleRate`. */
export async function openOutput(options: OpenOutputOptions = {}): Promise<AudioOutput> {
  const sampleRate = checkedRate(options.sampleRate);
  const nd = await requireNaudiodon();
  const device = resolveDevice(nd, options.deviceId, 'output');
  const started = performance.now();
  const { stream, format } = openNegotiated(device, sampleRate, 'output', (rate, channels) =>
    quiet(() => nd.AudioIO({ outOptions: streamOptions(device.id, rate, channels, OUTPUT_NATIVE_QUEUE_PERIODS) })),
  );
  const opened = { ...device, ...format, openMs: performance.now() - started };
  const output = new DeviceOutput(stream, opened, sampleRate, options.bufferMs ?? DEFAULT_BUFFER_MS);
  await startStream(stream, () => output.close(), device.name);
  return output;
}

// ---------------------------------------------------------------------------------------------
// Opening

type Direction = 'input' | 'output';

interface DeviceChoice {
  /** undefined = the system default device. */
  id: number | undefined;
  name: string;
}

interface DeviceFormat {
  sampleRate: number;
  channels: number;
}

/** The caller's rate (default PIPELINE_SAMPLE_RATE); a period must be whole samples at it. */
function checkedRate(sampleRate = PIPELINE_SAMPLE_RATE): number {
  const periodsPerSecond = 1000 / PERIOD_MS;
  if (!Number.isInteger(sampleRate) || sampleRate <= 0 || sampleRate % periodsPerSecond !== 0) {
    throw new UsageError(`audio: sampleRate must be a positive multiple of ${periodsPerSecond} Hz, got ${sampleRate}`);
  }
  return sampleRate;
}

async function requireNaudiodon(): Promise<Naudiodon> {
  const availability = await loadNaudiodon().then(
    (nd) => ({ nd }),
    (err: unknown) => ({ err }),
  );
  if ('err' in availability) {
    throw new ConfigError(`audio devices are unavailable: naudiodon failed to load: ${firstLine(availability.err)}`, {
      cause: availability.err,
      suggestions: [INSTALL_HINT],
    });
  }
  return availability.nd;
}

/** Map a device id or name fragment to one device that can do `direction`. */
function resolveDevice(nd: Naudiodon, wanted: number | string | undefined, direction: Direction): DeviceChoice {
  if (wanted === undefined) return { id: undefined, name: `default ${direction}` };
  const devices = nativeCall('list audio devices', () => quiet(() => nd.getDevices())).filter((d) => channelsFor(d, direction) > 0);
  const matches = matchDevices(devices, wanted);
  if (matches.length === 1) return { id: matches[0].id, name: matches[0].name };
  const listing = devices.map((d) => `${d.id}: ${d.name}`).join(', ') || 'none';
  const problem = matches.length === 0 ? `no audio ${direction} device matches "${wanted}"` : `"${wanted}" matches several audio ${direction} devices`;
  throw new UsageError(`${problem}; ${direction} devices: ${listing}`, {
    suggestions: [`pass a device index or a distinctive part of its name (wzp audio devices lists them)`],
  });
}

function matchDevices(devices: DeviceInfo[], wanted: number | string): DeviceInfo[] {
  if (typeof wanted === 'number' || /^\d+$/.test(wanted)) {
    return devices.filter((d) => d.id === Number(wanted));
  }
  const needle = wanted.toLowerCase();
  const exact = devices.filter((d) => d.name.toLowerCase() === needle);
  return exact.length > 0 ? exact : devices.filter((d) => d.name.toLowerCase().includes(needle));
}

/**
 * Create the stream at the caller's rate in mono if the device takes it, else at the first
 * rate (integer ratio to the caller's) and channel count it accepts.
 */
function openNegotiated<S>(
  device: DeviceChoice,
  sampleRate: number,
  direction: Direction,
  create: (rate: number, channels: number) => S,
): { stream: S; format: DeviceFormat } {
  let lastRejection: unknown;
  for (const format of candidateFormats(sampleRate)) {
    try {
      return { stream: create(format.sampleRate, format.channels), format };
    } catch (err) {
      if (!FORMAT_REJECTED.test(errorMessage(err))) throw openError(device, direction, err);
      lastRejection = err;
    }
  }
  throw openError(device, direction, lastRejection, `none of the formats wzp can convert (mono or stereo, 16-bit, ${candidateRates(sampleRate).join('/')} Hz) is supported`);
}

function candidateFormats(sampleRate: number): DeviceFormat[] {
  return candidateRates(sampleRate).flatMap((rate) => CHANNEL_CHOICES.map((channels) => ({ sampleRate: rate, channels })));
}

/** The caller's rate first, then fallback rates one resampler step away from it. */
function candidateRates(sampleRate: number): number[] {
  const convertible = FALLBACK_RATES.filter((rate) => {
    const ratio = Math.max(rate, sampleRate) / Math.min(rate, sampleRate);
    return rate !== sampleRate && Number.isInteger(ratio);
  });
  return [sampleRate, ...convertible];
}

function streamOptions(deviceId: number | undefined, sampleRate: number, channels: number, queuePeriods: number): AudioOptions {
  const framesPerBuffer = (sampleRate * PERIOD_MS) / 1000;
  return {
    deviceId: deviceId ?? -1,
    sampleRate,
    channelCount: channels,
    sampleFormat: SAMPLE_FORMAT_INT16,
    framesPerBuffer,
    maxQueue: queuePeriods,
    // One period per native read, so captured audio reaches JS as soon as the device has it.
    highwaterMark: framesPerBuffer * channels * 2,
    // Keep running through device under/overflows (naudiodon would otherwise end the stream).
    closeOnError: false,
  };
}

async function startStream(stream: IoStreamRead | IoStreamWrite, close: () => Promise<void>, deviceName: string): Promise<void> {
  try {
    quiet(() => stream.start());
  } catch (err) {
    await close();
    throw new ConfigError(`cannot start audio device "${deviceName}": ${firstLine(err)}`, { cause: err, suggestions: [NO_DEVICE_HINT] });
  }
}

function openError(device: DeviceChoice, direction: Direction, err: unknown, detail?: string): ConfigError {
  const message = firstLine(err);
  const hint = /no default device/i.test(message)
    ? `there is no default audio ${direction} device: ${NO_DEVICE_HINT}`
    : /unavailable|busy/i.test(message)
      ? 'the device may be in use by another program, or its sound server may have stopped'
      : NO_DEVICE_HINT;
  return new ConfigError(`cannot open audio ${direction} "${device.name}": ${detail ?? message}${detail ? ` (PortAudio: ${message})` : ''}`, {
    cause: err,
    suggestions: [hint],
  });
}

// ---------------------------------------------------------------------------------------------
// Streams

class DeviceInput implements AudioInput {
  private readonly ring: SampleRing;
  private readonly resampler: Resampler | undefined;
  private readonly watchdog: StallWatchdog;
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly stream: IoStreamRead,
    readonly device: OpenedDevice,
    sampleRate: number,
    readonly frameSamples: number,
    bufferMs: number,
  ) {
    this.ring = new SampleRing(Math.max(frameSamples, Math.round((sampleRate * bufferMs) / 1000)));
    this.resampler = device.sampleRate === sampleRate ? undefined : createResampler(device.sampleRate, sampleRate);
    this.watchdog = new StallWatchdog(() => this.fail(stalledError('input', device)));
    stream.on('data', (chunk: Buffer) => this.onChunk(chunk));
    stream.on('error', (err: unknown) => this.fail(asError(err)));
  }

  get overruns(): number {
    return this.ring.overflows;
  }

  get dropped(): number {
    return this.ring.dropped;
  }

  get error(): Error | undefined {
    return this.failure;
  }

  read(): Int16Array | undefined {
    return this.ring.read(this.frameSamples);
  }

  readSamples(count: number): Int16Array {
    const buffered = this.ring.readUpTo(count);
    if (buffered.length === count) return buffered;
    const out = new Int16Array(count);
    out.set(buffered);
    return out;
  }

  available(): number {
    return this.ring.available();
  }

  close(): Promise<void> {
    this.watchdog.stop();
    this.closing ??= stopNative(this.stream);
    return this.closing;
  }

  private onChunk(chunk: Buffer): void {
    this.watchdog.alive();
    const mono = downmix(int16View(chunk), this.device.channels);
    this.ring.write(this.resampler ? this.resampler.process(mono) : mono);
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.watchdog.stop();
  }
}

class DeviceOutput implements AudioOutput {
  underruns = 0;
  private readonly ring: SampleRing;
  private readonly resampler: Resampler | undefined;
  /** Caller samples per device period. */
  private readonly periodSamples: number;
  /** Whether the last period came from the caller's audio (an empty queue then is an underrun). */
  private playing = false;
  private readonly watchdog: StallWatchdog;
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly stream: IoStreamWrite,
    readonly device: OpenedDevice,
    sampleRate: number,
    bufferMs: number,
  ) {
    this.periodSamples = (sampleRate * PERIOD_MS) / 1000;
    this.ring = new SampleRing(Math.max(this.periodSamples, Math.round((sampleRate * bufferMs) / 1000)));
    this.resampler = device.sampleRate === sampleRate ? undefined : createResampler(sampleRate, device.sampleRate);
    this.watchdog = new StallWatchdog(() => this.fail(stalledError('output', device)));
    stream.on('error', (err: unknown) => this.fail(asError(err)));
    this.pump();
  }

  get dropped(): number {
    return this.ring.dropped;
  }

  get error(): Error | undefined {
    return this.failure;
  }

  write(pcm: Int16Array): void {
    if (!this.stopped && !this.failure) this.ring.write(pcm);
  }

  queuedSamples(): number {
    return this.ring.available();
  }

  close(): Promise<void> {
    this.closing ??= this.drainAndStop();
    return this.closing;
  }

  /** Hand the device its next period, then do it again once naudiodon has queued it. */
  private pump(): void {
    if (this.stopped || this.failure) return;
    const period = upmix(this.nextPeriod(), this.device.channels);
    const bytes = Buffer.from(period.buffer, period.byteOffset, period.byteLength);
    this.stream.write(bytes, (err?: Error | null) => {
      if (err) {
        this.fail(asError(err));
        return;
      }
      this.watchdog.alive();
      this.pump();
    });
  }

  /** One period at the device rate: the caller's audio, padded with silence if it ran short. */
  private nextPeriod(): Int16Array {
    const queued = this.ring.readUpTo(this.periodSamples);
    if (queued.length === this.periodSamples) {
      this.playing = true;
    } else {
      if (this.playing) this.underruns++;
      this.playing = false;
    }
    const period = new Int16Array(this.periodSamples);
    period.set(queued);
    return this.resampler ? this.resampler.process(period) : period;
  }

  private async drainAndStop(): Promise<void> {
    const deadline = performance.now() + OUTPUT_DRAIN_MS;
    while (this.ring.available() > 0 && !this.failure && performance.now() < deadline) await sleep(PERIOD_MS);
    this.stopped = true;
    this.watchdog.stop();
    await stopNative(this.stream);
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.watchdog.stop();
  }
}

/**
 * Calls `onStall` once if `alive()` is not called for STALL_MS. A late check (the event loop
 * itself was blocked) restarts the wait instead: the stream's data may be queued behind it.
 */
class StallWatchdog {
  private lastAlive = performance.now();
  private lastCheck = performance.now();
  private readonly timer: NodeJS.Timeout;

  constructor(onStall: () => void) {
    this.timer = setInterval(() => {
      const now = performance.now();
      const late = now - this.lastCheck > 2 * STALL_CHECK_MS;
      this.lastCheck = now;
      if (late) this.lastAlive = now;
      else if (now - this.lastAlive > STALL_MS) {
        this.stop();
        onStall();
      }
    }, STALL_CHECK_MS);
    this.timer.unref();
  }

  alive(): void {
    this.lastAlive = performance.now();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

function stalledError(direction: Direction, device: OpenedDevice): ConfigError {
  return new ConfigError(`audio ${direction} "${device.name}" stopped: no audio for ${STALL_MS / 1000} s`, {
    suggestions: ['the device may have been unplugged or its sound server (PulseAudio/PipeWire) may have stopped'],
  });
}

/** Stop a naudiodon stream, giving up (without throwing) if the native side hangs. */
async function stopNative(stream: IoStreamRead | IoStreamWrite): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let finished = false;
  const quit = quitNative(stream).then(() => {
    finished = true;
  });
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_TIMEOUT_MS)));
  await Promise.race([quit, timeout]);
  clearTimeout(timer);
  if (!finished) {
    hungStops++;
    void quit.then(() => hungStops--);
  }
}

/** naudiodon's quit() returns a promise (its typings say void) that can reject. */
function quitNative(stream: IoStreamRead | IoStreamWrite): Promise<void> {
  try {
    return Promise.resolve(stream.quit() as unknown as Promise<void> | undefined).catch(() => undefined);
  } catch {
    return Promise.resolve();
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

function toDeviceInfo(d: DeviceInfo, defaultInput: number | undefined, defaultOutput: number | undefined): AudioDeviceInfo {
  return {
    id: d.id,
    name: d.name,
    hostApi: d.hostAPIName,
    maxInputChannels: d.maxInputChannels,
    maxOutputChannels: d.maxOutputChannels,
    defaultSampleRate: d.defaultSampleRate,
    isDefaultInput: d.id === defaultInput,
    isDefaultOutput: d.id === defaultOutput,
  };
}

function channelsFor(d: DeviceInfo, direction: Direction): number {
  return direction === 'input' ? d.maxInputChannels : d.maxOutputChannels;
}

function nativeCall<T>(what: string, call: () => T): T {
  try {
    return call();
  } catch (err) {
    throw new ConfigError(`cannot ${what}: ${firstLine(err)}`, { cause: err, suggestions: [NO_DEVICE_HINT] });
  }
}

/** The 16-bit samples in a byte buffer (copied only if the bytes are not 2-byte aligned). */
function int16View(bytes: Buffer): Int16Array {
  const aligned = bytes.byteOffset % 2 === 0 ? bytes : Buffer.from(bytes);
  return new Int16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >> 1);
}

/** Average interleaved channels into one. */
function downmix(interleaved: Int16Array, channels: number): Int16Array {
  if (channels === 1) return interleaved;
  const mono = new Int16Array(Math.floor(interleaved.length / channels));
  for (let i = 0; i < mono.length; i++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) sum += interleaved[i * channels + c];
    mono[i] = Math.round(sum / channels);
  }
  return mono;
}

/** Copy one channel to all. */
function upmix(mono: Int16Array, channels: number): Int16Array {
  if (channels === 1) return mono;
  const interleaved = new Int16Array(mono.length * channels);
  for (let i = 0; i < mono.length; i++) interleaved.fill(mono[i], i * channels, (i + 1) * channels);
  return interleaved;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function firstLine(err: unknown): string {
  return errorMessage(err).split('\n')[0];
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
