/**
 * `wzp echo-test`: measure the media path through a relay in echo mode. Without a relay
 * address it starts an embedded relay on loopback, so it works on a fresh machine.
 */
import { MAX_ECHO_FRAMES, runEchoTest, type EchoTestMeasurement } from '../../core/client/echo.js';
import type { RelaySession } from '../../core/client/relay-session.js';
import { UsageError } from '../../core/errors.js';
import type { StreamSettings } from '../../core/media/pipeline.js';
import type { TierName } from '../../core/media/quality.js';
import { tierStreamSettings } from '../../core/media/stream-settings.js';
import { formatHostPort } from '../../core/transport/quic.js';
import type { Registries } from '../../core/registry.js';
import { connectToRelay } from './relay-connect.js';

export interface EchoTestRequest {
  relay?: string;
  configDir: string;
  relayFingerprint?: string;
  /** Access token for a relay that requires one (`--token` / WZP_TOKEN). */
  token?: string;
  /** How long to wait for the relay when connecting, ms (default 5 s). */
  timeoutMs?: number;
  /** Media on the UDP media path when the relay offers it, or always in QUIC datagrams. */
  mediaPath?: 'auto' | 'quic';
  /** A quality tier (its codec and FEC); without it, `codec` with no FEC. */
  tier?: TierName;
  codec: string;
  durationMs: number;
  /** Frame size for a bare codec (default: 20 ms if the codec has it, else its first). */
  frameMs?: number;
  bitrate?: number;
  /** Talk into the microphone and hear yourself back on the speaker. */
  mic?: { inputDevice?: string; outputDevice?: string };
  registries: Registries;
  signal?: AbortSignal;
  onProgress?: Parameters<typeof runEchoTest>[0]['onProgress'];
  /** Connected; `trust` as in the report's relay.trust (`pinned-new`: pinned on first use now). */
  onConnected?(info: { relay: string; fingerprint: string; embedded: boolean; trust: string }): void;
}

export interface EchoTestReport extends EchoTestMeasurement {
  tier?: TierName;
  codec: { name: string; plugin: string; codecId: number; bitrate?: number };
  fec: { scheme: string; k: number; r: number; depth: number };
  /** mediaPath: the path the echoed media went on at the end (docs/transport.md). */
  relay: { address: string; fingerprint: string; embedded: boolean; trust: string; handshakeMs: number; mediaPath: 'udp' | 'quic' };
}

function streamSettings(req: EchoTestRequest): StreamSettings {
  const { codecs, fec } = req.registries;
  if (req.tier) return tierStreamSettings(req.tier, req.registries);
  const codec = codecs.require(req.codec);
  // Without --frame-ms, the codec's own frame size: 20 ms if it has it (the call path's), else
  // its first (Codec2 1200 works in 40 ms frames).
  const frameMs = req.frameMs ?? (codec.frameDurationsMs.includes(DEFAULT_FRAME_MS) ? DEFAULT_FRAME_MS : codec.frameDurationsMs[0]);
  if (!codec.frameDurationsMs.includes(frameMs)) {
    throw new UsageError(`codec ${codec.name} does not support ${frameMs} ms frames`, {
      suggestions: [`supported: ${codec.frameDurationsMs.join(', ')} ms (leave out --frame-ms for the codec's own)`],
    });
  }
  return { tier: 0, codec, frameMs, bitrate: req.bitrate, fec: fec.require('none'), k: 1, r: 0, depth: 1 };
}

/** Frame size of a bare codec when the codec has it and --frame-ms is not given. */
export const DEFAULT_FRAME_MS = 20;

export async function echoTest(req: EchoTestRequest): Promise<EchoTestReport> {
  const settings = streamSettings(req);
  if (req.durationMs / settings.frameMs > MAX_ECHO_FRAMES) {
    throw new UsageError(`--duration is too long: at most ${(MAX_ECHO_FRAMES * settings.frameMs) / 1000} s with ${settings.frameMs} ms frames`);
  }
  const audio = req.mic ? await openMicAndSpeaker(req.mic) : undefined;
  let session: RelaySession;
  let stop: () => Promise<void>;
  let trust: string;
  let embedded = false;
  try {
    if (req.relay === undefined) {
      // Loaded only when needed: the relay side pulls in the X.509 library.
      const { startEmbeddedRelay } = await import('./embedded-relay.js');
      const e = await startEmbeddedRelay({ signal: req.signal });
      session = e.session;
      stop = e.stop;
      trust = 'embedded';
      embedded = true;
    } else {
      const c = await connectToRelay({
        relay: req.relay,
        configDir: req.configDir,
        relayFingerprint: req.relayFingerprint,
        token: req.token,
        timeoutMs: req.timeoutMs,
        signal: req.signal,
      });
      session = c.session;
      stop = () => c.session.close();
      trust = c.trust;
    }
  } catch (err) {
    await audio?.close();
    throw err;
  }
  try {
    const address = formatHostPort(session.relay);
    req.onConnected?.({ relay: address, fingerprint: session.relayFingerprint, embedded, trust });
    session.useMediaPath(req.mediaPath ?? 'auto');
    await session.joinEcho({ signal: req.signal });
    const m = await runEchoTest({
      datagrams: session.datagrams,
      settings,
      durationMs: req.durationMs,
      live: audio?.input,
      playback: audio?.output,
      signal: req.signal,
      onProgress: req.onProgress,
    });
    const mediaPath = session.mediaPathStats().path;
    return {
      ...m,
      ...(req.tier ? { tier: req.tier } : {}),
      codec: {
        name: settings.codec.name,
        plugin: req.registries.codecs.get(settings.codec.name).plugin,
        codecId: settings.codec.codecId,
        ...(settings.bitrate ? { bitrate: settings.bitrate } : {}),
      },
      fec: { scheme: settings.fec.name, k: settings.k, r: settings.r, depth: settings.depth },
      relay: { address, fingerprint: session.relayFingerprint, embedded, trust, handshakeMs: Math.round(session.handshakeMs * 10) / 10, mediaPath },
    };
  } finally {
    await stop();
    await audio?.close();
  }
}

async function openMicAndSpeaker(mic: NonNullable<EchoTestRequest['mic']>) {
  const { openMic, openSpeaker } = await import('./audio-devices.js');
  const input = await openMic(mic.inputDevice);
  const output = await openSpeaker(mic.outputDevice).catch(async (err: unknown) => {
    await input.close();
    throw err;
  });
  return {
    input,
    output: (pcm: Int16Array) => output.write(pcm),
    async close() {
      await input.close();
      await output.close();
    },
  };
}
