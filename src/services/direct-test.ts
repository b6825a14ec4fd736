/**
 * `wzp direct-test RELAY --to FINGERPRINT` and `wzp direct-test RELAY --wait`: two people at
 * two sites find out whether a direct path works between their networks, without a call.
 * The signalling is a 1:1 call's (signed offer and answer marked `purpose: direct-test`, both
 * sides' candidates and NAT profiles); then only the connectivity checks and the hard-NAT
 * strategies run (core/client/direct-test.ts). Each side gets the report and the verdict.
 */
import { natProfileToSend, type GatheredForCall } from '../../core/client/call-candidates.js';
import { IncomingCall, placeCall, type EstablishedCall } from '../../core/client/direct-call.js';
import { runDirectTest, type DirectTestResult } from '../../core/client/direct-test.js';
import { AbortError, NetworkError, RefusedError, UsageError } from '../../core/errors.js';
import { installedStrategies } from '../../core/p2p/hard-nat.js';
import { primeTowards } from '../../core/p2p/direct-link.js';
import { parseDialTarget } from '../../core/transport/quic.js';
import { gatherFor, presenceProgress, registerOn, type Registered, type SignallingRequest } from './direct-call.js';
import { checkOutputFile, writeFileAtomic } from './output-files.js';
import { checkHostPort } from './nat-config.js';
import { checkGatewayFlag } from './portmap.js';
import type { ReportMeta } from './report-meta.js';

export const DIRECT_TEST_SCHEMA_VERSION = 1;

export interface DirectTestRequest extends Omit<SignallingRequest, 'relayOnly'> {
  /** Test with this identity (we offer); absent: wait for a test (`--wait`). */
  to?: string;
  /** Waiting: take tests only from these identities (absent: from anyone who offers one). */
  acceptFrom?: string[];
  /** How long the offer rings (with `to`) or how long we wait for one (`--wait`), ms. */
  waitMs: number;
  /** How long the test itself tries, ms. */
  testMs: number;
  reportPath?: string;
  onRegistered?(info: { fingerprint: string; relay: string }): void;
}

export interface DirectTestReport extends DirectTestResult {
  /** Ctrl-C stopped the test: the report holds what it had measured (exit 130). */
  interrupted?: true;
  meta: ReportMeta;
  fingerprint: string;
  relay: Registered['relay'];
  /** Our candidates as sent, and what became of the port mapping made for the test. */
  candidates: { sent: number; portMapping: Awaited<ReturnType<GatheredForCall['releaseMapping']>> };
  /** Our profile was measured from these STUN servers beside the relay (none: the relay's view alone). */
  natNotes?: readonly string[];
}

export async function directTest(req: DirectTestRequest): Promise<DirectTestReport> {
  parseDialTarget(req.relay);
  checkGatewayFlag(req.gateway);
  for (const server of req.stun ?? []) checkHostPort(server);
  if (req.reportPath) checkOutputFile(req.reportPath, 'the report');
  const full: SignallingRequest = { ...req, relayOnly: false };
  const reg = await registerOn(full, { receiveCalls: req.to === undefined, onPresence: (e) => presenceProgress(e, full) });
  let gathered: GatheredForCall | undefined;
  try {
    req.onRegistered?.({ fingerprint: reg.identity.fingerprint, relay: reg.relay.address });
    let call: EstablishedCall;
    if (req.to !== undefined) {
      if (req.to === reg.identity.fingerprint) throw new UsageError('--to is your own fingerprint: a test needs someone at the other site');
      gathered = await gatherFor(reg.session, full);
      req.onProgress?.(`offering a direct-path test to ${req.to}...`);
      call = await placeCall(reg.presence, {
        to: req.to,
        purpose: 'direct-test',
        candidates: gathered.wire,
        nat: natProfileToSend(gathered),
        ringTimeoutMs: req.waitMs,
        signal: req.signal,
      });
    } else {
      const taken = await waitForTest(req, reg, full);
      call = taken.call;
      gathered = taken.gathered;
    }
    const direct = gathered.direct;
    if (!direct) throw new NetworkError('no direct path can be tried from here: the call socket has no usable address');
    req.onProgress?.(`${call.peer} is in; checking pairs${direct.localCandidates.length ? ` from ${direct.localCandidates.length} candidates` : ''}...`);
    const result = await runDirectTest(call, {
      direct: { ...direct, strategies: installedStrategies(req.registries.natStrategies) },
      timeoutMs: req.testMs,
      signal: req.signal,
      onEvent: (e) => {
        if (e.type === 'direct:up') req.onProgress?.(`direct: ${e.pair.types} ${e.pair.remoteAddress}${e.pair.rttMs === undefined ? '' : ` (${e.pair.rttMs} ms)`}; confirming...`);
      },
    });
    const mapping = await gathered.releaseMapping();
    const report: DirectTestReport = {
      // Ctrl-C during the test: what was measured is kept, and the exit code says interrupted (130).
      ...(result.endedBy === 'hangup' ? { interrupted: true as const } : {}),
      meta: req.meta(DIRECT_TEST_SCHEMA_VERSION),
      fingerprint: reg.identity.fingerprint,
      relay: reg.relay,
      ...result,
      candidates: { sent: gathered.wire.length, portMapping: mapping },
      ...(gathered.natNotes?.length ? { natNotes: gathered.natNotes } : {}),
    };
    if (req.reportPath) await writeFileAtomic(req.reportPath, `${JSON.stringify(report, null, 2)}\n`, 'the report');
    return report;
  } finally {
    await gathered?.releaseMapping();
    await reg.session.close().catch(() => undefined);
  }
}

/**
 * `--wait`: the first direct-test offer (from `acceptFrom`, if given) is answered; calls and
 * tests from others are declined. Ends with NetworkError when nothing came within waitMs.
 */
async function waitForTest(req: DirectTestRequest, reg: Registered, full: SignallingRequest): Promise<{ call: EstablishedCall; gathered: GatheredForCall }> {
  return new Promise((resolve, reject) => {
    let taken = false;
    const timer = setTimeout(() => done(() => reject(new NetworkError(`no direct-path test was offered within ${Math.round(req.waitMs / 1000)} s`, { suggestions: ['the other side runs `wzp direct-test RELAY --to YOUR-FINGERPRINT` on the same relay'] }))), req.waitMs);
    const onAbort = () => done(() => reject(new AbortError('interrupted while waiting for a direct-path test')));
    const done = (how: () => void) => {
      clearTimeout(timer);
      req.signal.removeEventListener('abort', onAbort);
      how();
    };
    if (req.signal.aborted) return onAbort();
    req.signal.addEventListener('abort', onAbort, { once: true });
    void reg.presence.replaced.then(() => done(() => reject(new RefusedError(`another session registered as ${reg.identity.fingerprint} on ${reg.relay.address}`))));
    reg.presence.onOffer((offer) => {
      const incoming = new IncomingCall(reg.presence, offer);
      if (offer.purpose !== 'direct-test') {
        req.onProgress?.(`${offer.from} called: declined (this is a direct-path test; \`wzp listen\` takes calls)`);
        void incoming.reject('declined');
        return;
      }
      if (taken || (req.acceptFrom !== undefined && !req.acceptFrom.includes(offer.from))) {
        req.onProgress?.(`direct-path test from ${offer.from}: declined (${taken ? 'one test at a time' : 'not in --accept-from'})`);
        void incoming.reject(taken ? 'busy' : 'declined');
        return;
      }
      taken = true;
      req.onProgress?.(`direct-path test from ${offer.from}: answering`);
      void (async () => {
        let gathered: GatheredForCall;
        try {
          gathered = await gatherFor(reg.session, full);
        } catch (err) {
          // Not answered: the tester is told, and this side reports why.
          void incoming.reject('declined');
          done(() => reject(err));
          return;
        }
        try {
          const call = await incoming.accept({
            candidates: gathered.wire,
            nat: natProfileToSend(gathered),
            waitForRoute: false,
            // Our NAT is primed toward the tester before it can check us, as a callee does.
            beforeAnswer: ({ callId, keys }) => {
              const d = gathered.direct;
              if (!d || d.primeTtl === undefined) return;
              primeTowards({ demux: d.demux, socketType: d.socketType, checkKey: keys.checkKey, callId, candidates: [...offer.candidates, ...(offer.relayCandidate ? [offer.relayCandidate] : [])], ttl: d.primeTtl });
            },
          });
          done(() => resolve({ call, gathered }));
        } catch (err) {
          await gathered.releaseMapping();
          done(() => reject(err));
        }
      })();
    });
  });
}
