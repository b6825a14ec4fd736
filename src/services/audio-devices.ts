/**
 * The sound devices as a call's source and sink (the pipeline format: 48 kHz mono 16-bit),
 * shared by `wzp call --mic` and `wzp echo-test --mic`. Loaded on demand: PortAudio and koffi
 * (native) are only for device runs, and a tone or file call does not pay for them at start-up.
 */
import type { FrameSink, FrameSource } from '../../core/audio/sources.js';

/**
 * Native code that writes to stdout would corrupt --json output: divert it while a device is
 * open (core/audio/stdout-guard.ts; the diversion is reference-counted).
 */
async function divertNativeStdout(): Promise<() => void> {
  const { divertNativeStdout: divert } = await import('../../core/audio/stdout-guard.js');
  return divert();
}

/**
 * The microphone as a FrameSource: whatever size the caller reads, from the device's buffer
 * (AudioInput.readSamples); a shortfall reads as silence.
 */
export async function openMic(device?: string): Promise<FrameSource & { close(): Promise<void> }> {
  const { openInput } = await import('../../core/audio/devices.js');
  const release = await divertNativeStdout();
  const input = await openInput({ deviceId: device, frameSamples: 960 }).catch((err: unknown) => {
    release();
    throw err;
  });
  return {
    ended: false,
    read: (samples: number) => input.readSamples(samples),
    close: async () => {
      await input.close();
      release();
    },
  };
}

/** The speaker as a FrameSink. */
export async function openSpeaker(device?: string): Promise<FrameSink & { close(): Promise<void> }> {
  const { openOutput } = await import('../../core/audio/devices.js');
  const release = await divertNativeStdout();
  const output = await openOutput({ deviceId: device }).catch((err: unknown) => {
    release();
    throw err;
  });
  return {
    write: (pcm) => output.write(pcm),
    close: async () => {
      await output.close();
      release();
    },
  };
}

export async function listAudioDevices(): Promise<{ devices: Awaited<ReturnType<typeof import('../../core/audio/devices.js').listDevices>> }> {
  const { listDevices } = await import('../../core/audio/devices.js');
  return { devices: await listDevices() };
}
