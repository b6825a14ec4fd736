/**
 * `wzp echo-test`: measure the media path through a relay in echo mode. Without a relay
 * address it starts an embedded relay on loopback, so it works on a fresh machine.
 */
import { MAX_ECHO_FRAMES, runEchoTest, type EchoTestMeasurement } from '../../core/client/echo.js';
import type { RelaySession } from '../../core/client/relay-session.js';
import { UsageError } from '../../core/errors.js';
import type { StreamSettings } from '../../core/media/pipeline.js';
import { fecFor, selectCodec, TIERS, type TierName } from '../../core/media/quality.js';
import { formatHostPort } from '../../core/transport/quic.js';
import type { Registries } from '../../core/registry.js';
import { connectToRelay } from './relay-connect.js';

export interface EchoTestRequest {
  relay?: string;
  configDir: string;
  relayFingerprint?: string;
  /** Media on the UDP media path when the relay offers it, or always in QUIC datagrams. */
  mediaPath?: 'auto' | 'quic';
  /** A quality tier (its codec and FEC); without it, `codec` with no FEC. */
  tier?: TierName;
  codec: string;
  durationMs: number;
  frameMs: number;
  bitrate?: number;
  /** Talk into the microphone and hear yourself back on the speaker. */
  mic?: { inputDevice?: string; outputDevice?: string };
  registries: Registries;
  signal?: AbortSignal;
  onProgress?: Parameters<typeof runEchoTest>[0]['onProgress'];
  onConnected?(info: { relay: string; fingerprint: string; embedded: boolean }): void;
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
  if (req.tier) {
    const tier = TIERS.find((t) => t.name === req.tier)!;
    const choice = selectCodec(tier, (c) => codecs.has(c) && codecs.get(c).factory.availability().available);
    const f = fecFor(tier, choice);
    return {
      tier: tier.id,
      codec: codecs.require(choice.codec),
      frameMs: choice.frameMs,
      bitrate: choice.bitrate,
      fec: fec.require(f.scheme),
      k: f.k,
      r: f.r,
      depth: f.interleaveDepth,
    };
  }
  const codec = codecs.require(req.codec);
  if (!codec.frameDurationsMs.includes(req.frameMs)) {
    throw new UsageError(`codec ${codec.name} does not support ${req.frameMs} ms frames`, {
      suggestions: [`supported: ${codec.frameDurationsMs.join(', ')} ms`],
    });
  }
  return { tier: 0, codec, frameMs: req.frameMs, bitrate: req.bitrate, fec: fec.require('none'), k: 1, r: 0, depth: 1 };
}

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
      const c = await connectToRelay({ relay: req.relay, configDir: req.configDir, relayFingerprint: req.relayFingerprint, signal: req.signal });
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
    req.onConnected?.({ relay: address, fingerprint: session.relayFingerprint, embedded });
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
