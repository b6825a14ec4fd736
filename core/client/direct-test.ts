/**
 * A direct-path test between two identities (`wzp direct-test`): the signalling of a 1:1 call
 * (signed offer and answer through the relay, both sides' candidates and NAT profiles, the
 * call's keys), then only the connectivity checks and the hard-NAT strategies (DirectLink),
 * no room and no audio. It ends when a pair is selected and has answered for `confirmMs`, or at
 * `timeoutMs`, or when either side hangs up; the report says what was tried and a plain
 * verdict. The tool a network admin runs with a colleague at another site.
 */
import type { DirectLinkEvent, DirectPathReport, PairSummary } from '../p2p/direct-link.js';
import type { NatProfile } from '../nat/strategy-types.js';
import { directLinkFor, type DirectPathOptions, type EstablishedCall, type PeerEnd } from './direct-call.js';

/** How long a selected pair must keep answering before the test calls it working. */
export const DIRECT_TEST_CONFIRM_MS = 2_000;
/** How long a test tries at most (checks, then the strategies' slots). */
export const DIRECT_TEST_TIMEOUT_MS = 20_000;

export interface DirectTestOptions {
  direct: DirectPathOptions;
  timeoutMs?: number;
  confirmMs?: number;
  signal?: AbortSignal;
  onEvent?(e: DirectLinkEvent): void;
}

export type DirectTestVerdictKind = 'direct' | 'relayed' | 'interrupted';

export interface DirectTestResult {
  peer: string;
  role: EstablishedCall['role'];
  /** How the test ended. */
  endedBy: 'confirmed' | 'timeout' | 'hangup' | PeerEnd;
  durationMs: number;
  /** ms from the answer to the first selected pair (absent: none). */
  timeToDirectMs?: number;
  selected?: PairSummary;
  /** Both NAT profiles as used (ours as measured, the peer's as it signed it). */
  nat: { local?: NatProfile; remote?: NatProfile };
  direct: DirectPathReport;
  verdict: { kind: DirectTestVerdictKind; summary: string; reasons: string[] };
}

/** Run the test on an answered call; hangs up at the end (the peer learns it at once). */
export async function runDirectTest(call: EstablishedCall, opts: DirectTestOptions): Promise<DirectTestResult> {
  const started = performance.now();
  const timeoutMs = opts.timeoutMs ?? DIRECT_TEST_TIMEOUT_MS;
  const confirmMs = opts.confirmMs ?? DIRECT_TEST_CONFIRM_MS;
  const d = opts.direct;
  let timeToDirectMs: number | undefined;
  let confirmTimer: NodeJS.Timeout | undefined;
  let finish!: (why: DirectTestResult['endedBy']) => void;
  const ended = new Promise<DirectTestResult['endedBy']>((resolve) => (finish = resolve));
  const link = directLinkFor(call, d, {
    watchAddresses: false,
    onEvent: (e) => {
      if (e.type === 'direct:up') {
        timeToDirectMs ??= Math.round(performance.now() - started);
        clearTimeout(confirmTimer);
        confirmTimer = setTimeout(() => finish('confirmed'), confirmMs);
      } else if (e.type === 'direct:down') {
        clearTimeout(confirmTimer);
      }
      opts.onEvent?.(e);
    },
  });
  const timeout = setTimeout(() => finish('timeout'), timeoutMs);
  const onAbort = () => finish('hangup');
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener('abort', onAbort, { once: true });
  void call.peerEnded.then((why) => finish(why));
  link.start();
  let endedBy: DirectTestResult['endedBy'];
  try {
    endedBy = await ended;
  } finally {
    clearTimeout(timeout);
    clearTimeout(confirmTimer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
  const direct = link.report();
  // No media here (no room, no source id): the selected pair answering is what counts, not the media path's state.
  const selected = link.checker.nominated !== undefined && !link.checker.stale ? link.selected() : undefined;
  link.close();
  if (endedBy !== 'peer-hangup' && endedBy !== 'peer-gone') await call.hangup();
  call.close();
  const nat = { ...(call.localNat ? { local: call.localNat } : {}), ...(call.peerNat ? { remote: call.peerNat } : {}) };
  return {
    peer: call.peer,
    role: call.role,
    endedBy,
    durationMs: Math.round(performance.now() - started),
    ...(timeToDirectMs === undefined ? {} : { timeToDirectMs }),
    ...(selected ? { selected } : {}),
    nat,
    direct,
    verdict: directTestVerdict({ endedBy, selected, timeToDirectMs, direct, nat, peerRelayOnly: call.peerRelayOnly }),
  };
}

/** The plain verdict of a direct test, first rule that applies. */
export function directTestVerdict(r: {
  endedBy: DirectTestResult['endedBy'];
  selected?: PairSummary;
  timeToDirectMs?: number;
  direct: DirectPathReport;
  nat: { local?: NatProfile; remote?: NatProfile };
  peerRelayOnly?: boolean;
}): DirectTestResult['verdict'] {
  const reasons: string[] = [];
  const won = r.direct.hardNat?.attempts.find((a) => a.outcome === 'succeeded');
  const tried = (r.direct.hardNat?.attempts ?? []).filter((a) => a.plan !== undefined);
  for (const a of r.direct.hardNat?.attempts ?? []) {
    reasons.push(
      a.plan
        ? `${a.strategy}: ${a.outcome}, ${a.packetsSent} of ${a.plan.budget.packets} probes, ${a.socketsOpened} of ${a.plan.sockets} sockets (${a.rationale})`
        : `${a.strategy}: ${a.outcome}${a.error ? ` (${a.error})` : ''}: ${a.rationale || 'nothing for our side to send'}`,
    );
  }
  if (r.selected) {
    reasons.unshift(`pair ${r.selected.types} (${r.selected.remoteAddress}) selected after ${r.timeToDirectMs ?? '?'} ms${r.selected.rttMs === undefined ? '' : `, round trip ${r.selected.rttMs} ms`}`);
    const by = won ? ` (found by ${won.strategy})` : '';
    return { kind: 'direct', summary: `direct calls work between these two networks${by}`, reasons };
  }
  if (r.endedBy === 'hangup') return { kind: 'interrupted', summary: 'interrupted before a direct path was found', reasons };
  if (r.peerRelayOnly) {
    reasons.unshift('the other side answered with --relay-only: it sent no address');
    return { kind: 'relayed', summary: 'relayed: the other side keeps its addresses private (--relay-only)', reasons };
  }
  const local = r.nat.local;
  const remote = r.nat.remote;
  const symmetric = (p: NatProfile | undefined) => p !== undefined && (p.mapping === 'address-dependent' || p.mapping === 'address-and-port-dependent');
  const random = (p: NatProfile | undefined) => symmetric(p) && p?.allocation.kind === 'random';
  const consent = r.direct.hardNat?.consent;
  if (consent && (!consent.local || !consent.remote)) {
    reasons.unshift(`hard-NAT probing declined by ${!consent.local ? 'this side' : 'the other side'} (--no-hard-nat)`);
  }
  if (random(local) && random(remote)) {
    reasons.unshift('both NATs map each destination to a new random port: no pair of ports can be predicted or met by chance within a sane budget');
    return { kind: 'relayed', summary: 'relayed: both NATs are symmetric with random ports', reasons };
  }
  if (symmetric(local) && symmetric(remote)) {
    reasons.unshift('both NATs are symmetric (a new mapping per destination)');
    return { kind: 'relayed', summary: 'relayed: both NATs are symmetric', reasons };
  }
  const answered = r.direct.pairs.some((p) => p.responses > 0);
  if (tried.length > 0) reasons.unshift(`the hard-NAT strategies tried (${tried.map((a) => a.strategy).join(', ')}) found no pair within their budget`);
  else if (!answered) reasons.unshift('no check was answered on any pair: a firewall may block UDP between these networks');
  return { kind: 'relayed', summary: 'relayed: no direct path found between these two networks', reasons };
}
