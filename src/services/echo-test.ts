/**
 * `wzp echo-test`: measure the media path through a relay in echo mode. Without a relay
 * address it starts an embedded relay on loopback, so it works on a fresh machine.
 */
import { MAX_ECHO_FRAMES, runEchoTest, type EchoTestMeasurement } from '../../core/client/echo.js';
import type { RelaySession } from '../../core/client/relay-session.js';
import { UsageError } from '../../core/errors.js';
import { formatHostPort } from '../../core/transport/quic.js';
import type { Registries } from '../../core/registry.js';
import { startEmbeddedRelay } from './embedded-relay.js';
import { connectToRelay } from './relay-connect.js';

export interface EchoTestRequest {
  relay?: string;
  configDir: string;
  relayFingerprint?: string;
  codec: string;
  durationMs: number;
  frameMs: number;
  bitrate?: number;
  registries: Registries;
  signal?: AbortSignal;
  onProgress?: Parameters<typeof runEchoTest>[0]['onProgress'];
  onConnected?(info: { relay: string; fingerprint: string; embedded: boolean }): void;
}

export interface EchoTestReport extends EchoTestMeasurement {
  codec: { name: string; plugin: string; codecId: number; bitrate?: number };
  relay: { address: string; fingerprint: string; embedded: boolean; trust: string; handshakeMs: number };
}

export async function echoTest(req: EchoTestRequest): Promise<EchoTestReport> {
  const { factory, plugin } = req.registries.codecs.get(req.codec);
  req.registries.codecs.require(req.codec);
  if (!factory.frameDurationsMs.includes(req.frameMs)) {
    throw new UsageError(`codec ${factory.name} does not support ${req.frameMs} ms frames`, {
      suggestions: [`supported: ${factory.frameDurationsMs.join(', ')} ms`],
    });
  }
  if (req.durationMs / req.frameMs > MAX_ECHO_FRAMES) {
    throw new UsageError(`--duration is too long: at most ${(MAX_ECHO_FRAMES * req.frameMs) / 1000} s with ${req.frameMs} ms frames`);
  }

  let session: RelaySession;
  let stop: () => Promise<void>;
  let trust: string;
  let embedded = false;
  if (req.relay === undefined) {
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
      signal: req.signal,
    });
    session = c.session;
    stop = () => c.session.close();
    trust = c.trust;
  }
  try {
    const address = formatHostPort(session.relay);
    req.onConnected?.({ relay: address, fingerprint: session.relayFingerprint, embedded });
    await session.joinEcho({ signal: req.signal });
    const m = await runEchoTest({
      datagrams: session.datagrams,
      codec: factory,
      durationMs: req.durationMs,
      frameMs: req.frameMs,
      bitrate: req.bitrate,
      signal: req.signal,
      onProgress: req.onProgress,
    });
    return {
      ...m,
      codec: { name: factory.name, plugin, codecId: factory.codecId, ...(req.bitrate ? { bitrate: req.bitrate } : {}) },
      relay: { address, fingerprint: session.relayFingerprint, embedded, trust, handshakeMs: Math.round(session.handshakeMs * 10) / 10 },
    };
  } finally {
    await stop();
  }
}
