/**
 * An in-process relay on loopback with a throwaway identity, for client commands run
 * without a RELAY argument (`wzp echo-test` on a fresh machine). The client trusts exactly
 * its fingerprint, so nothing is written to the pin store.
 */
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { Relay } from '../../core/relay/relay.js';
import { expectFingerprint, formatHostPort } from '../../core/transport/quic.js';

export interface EmbeddedRelay {
  relay: Relay;
  session: RelaySession;
  stop(): Promise<void>;
}

export async function startEmbeddedRelay(opts: { alias?: string; signal?: AbortSignal } = {}): Promise<EmbeddedRelay> {
  const tls = await deriveTlsCertificate(generateIdentity().seed);
  const relay = await Relay.start({ listen: { host: '127.0.0.1', port: 0 }, tls, fingerprint: tls.fingerprint });
  let session: RelaySession;
  try {
    session = await RelaySession.open({
      relay: relay.address,
      alias: opts.alias,
      signal: opts.signal,
      verify: expectFingerprint(tls.fingerprint, formatHostPort(relay.address)),
    });
  } catch (err) {
    await relay.stop();
    throw err;
  }
  return {
    relay,
    session,
    async stop() {
      await session.close();
      await relay.stop();
    },
  };
}
