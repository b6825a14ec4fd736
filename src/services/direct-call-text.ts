/** How `wzp call --to`, `wzp listen` and `wzp direct-test` summarise a 1:1 call, a listening session and a test for humans. */
import type { NatProfile } from '../../core/nat/strategy-types.js';
import { mediaPathText } from './relay-connect.js';
import type { DirectCallResult, ListenResult } from './direct-call.js';
import type { DirectTestReport } from './direct-test.js';

const ENDED_BY: Record<DirectCallResult['endedBy'], string> = {
  hangup: 'you hung up',
  duration: 'the --duration ran out',
  'source-ended': 'the file was sent',
  'relay-lost': 'the relay was lost',
  'peer-hangup': 'the other side hung up',
  'peer-left': 'the other side left',
  'peer-gone': "the other side's connection closed",
};

/** The end-of-call summary of a 1:1 call. */
export function directCallSummary(r: DirectCallResult): string {
  const d = r.direct;
  const lines = [
    `call ${d.role === 'caller' ? 'to' : 'from'} ${d.peer} ended (${ENDED_BY[r.endedBy]}) after ${(r.durationMs / 1000).toFixed(1)} s, tier ${r.tier}`,
    `  answered after ${(d.answerMs / 1000).toFixed(1)} s; media through the relay at first (${mediaPathText(r.relay.mediaPath)})${d.relayOnly ? '; --relay-only: no address of yours was sent' : ''}`,
    ...pathLines(r),
    natLine(r),
    `  sent ${r.sent.frames} frames in ${r.sent.packets} packets`,
  ];
  for (const p of r.participants) {
    lines.push(`  heard ${p.fingerprint} [${p.trust}]: ${p.packetsReceived} packets, loss ${p.lossPct}%, concealed ${p.concealedFrames}, MOS ${p.mos ?? '-'}`);
  }
  const dropped = Object.entries(d.signalsDropped).filter(([, n]) => n > 0);
  if (dropped.length) lines.push(`  call signals dropped: ${dropped.map(([reason, n]) => `${n} ${reason}`).join(', ')}`);
  if (r.recording) lines.push(`recorded ${(r.recording.durationMs / 1000).toFixed(1)} s to ${r.recording.path}`);
  return lines.join('\n');
}

/** The summary of a listening session. */
export function listenSummary(r: ListenResult): string {
  const lines = [`stopped listening on ${r.relay.address} as ${r.fingerprint} (${r.endedBy === 'once' ? '--once' : 'interrupted'}): ${r.calls.length + r.callsNotListed} calls`];
  for (const c of r.calls) {
    const end = c.outcome === 'answered' ? `, ${(((c.durationMs ?? 0) / 1000)).toFixed(1)} s, ended: ${c.endedBy === undefined ? '-' : ENDED_BY[c.endedBy]}` : '';
    lines.push(`  ${c.at} ${c.caller}: ${c.outcome}${end}${c.error ? ` (${c.error.message})` : ''}`);
  }
  if (r.callsNotListed) lines.push(`  ... and ${r.callsNotListed} more`);
  if (r.call) lines.push(directCallSummary(r.call));
  return lines.join('\n');
}

/** Both NAT profiles in one line: what a hard-NAT strategy had to go on. */
function natLine(r: DirectCallResult): string {
  const n = r.path.nat;
  const ours = n.local ? natText(n.local) : r.direct.relayOnly ? 'none sent (--relay-only)' : 'none measured (a relay on this machine)';
  const theirs = n.remote ? natText(n.remote) : n.remoteStatus === 'ignored' ? `ignored, so no consent (${n.remoteProblem ?? '?'})` : 'none, so no consent';
  return `  NAT: ours ${ours}; the peer's ${theirs}`;
}

function natText(p: NatProfile): string {
  const a = p.allocation;
  return `mapping ${p.mapping}, allocation ${a.kind}${a.delta === undefined ? '' : ` (step ${a.delta})`}, hard-NAT ${p.consent ? 'consented' : 'declined'}`;
}

/** Where the media went and why: the direct path's outcome, its switches, round trips per path. */
function pathLines(r: DirectCallResult): string[] {
  const p = r.path;
  if (!p.attempted) {
    const why = p.notAttempted === 'relay-only' ? 'you asked for --relay-only' : p.notAttempted === 'peer-relay-only' ? 'the other side asked for --relay-only' : 'no socket to try it on';
    return [`  path: relay only (${why})`];
  }
  const d = p.direct;
  const lines: string[] = [];
  const rtt = (x: { p50: number } | undefined) => (x === undefined ? '-' : `${x.p50} ms`);
  if (p.timeToDirectMs !== undefined) {
    lines.push(
      `  path: direct after ${p.timeToDirectMs} ms (${d?.selected ? `${d.selected.types} ${d.selected.remoteAddress}` : 'pair gone'}); ended ${p.final}; ${(p.directMs / 1000).toFixed(1)} s direct, ${(p.relayMs / 1000).toFixed(1)} s relayed, ${p.fallbacks} fallback(s)`,
    );
  } else {
    const failed = d?.pairs.filter((x) => x.state === 'failed').length ?? 0;
    lines.push(`  path: stayed on the relay: no direct pair answered (${d?.pairs.length ?? 0} pairs checked, ${failed} failed; the NATs on the way may both be symmetric: see \`wzp netcheck\`)`);
  }
  lines.push(`  round trip: relay ${rtt(p.rttMs.relay)}, direct ${rtt(p.rttMs.direct)}`);
  if (d) lines.push(`  candidates: ${d.candidates.sent} sent, ${d.candidates.received.length} received${d.candidates.relayObserved ? ', 1 from the relay' : ''}; checks ${d.checks.requestsSent} sent, ${d.checks.responsesReceived} answered`);
  for (const t of p.timeline.filter((x) => x.event === 'switch').slice(0, 10)) lines.push(`    ${t.atMs} ms: ${t.path}${t.pair ? ` (${t.pair})` : ''}: ${t.reason}`);
  return lines;
}

/** `wzp direct-test`'s human report: the verdict first, then what it rests on. */
export function directTestSummary(r: DirectTestReport): string {
  const lines = [`verdict     ${r.verdict.summary}`, ...r.verdict.reasons.map((reason) => `            - ${reason}`), ''];
  lines.push(`peer        ${r.peer} (we ${r.role === 'caller' ? 'offered' : 'answered'} the test; ${r.endedBy}, ${(r.durationMs / 1000).toFixed(1)} s)`);
  lines.push(`our NAT     ${r.nat.local ? natText(r.nat.local) : 'no profile (nothing measured)'}`);
  lines.push(`their NAT   ${r.nat.remote ? natText(r.nat.remote) : 'none received (a relay on this machine, --relay-only, an older wzp, or left out as invalid): no hard-NAT probing'}`);
  const d = r.direct;
  const mapping = r.candidates.portMapping;
  lines.push(
    `candidates  ${d.candidates.sent} sent, ${d.candidates.received.length} received${d.candidates.refused ? ` (${d.candidates.refused} refused)` : ''}; port mapping ${mapping.status === 'mapped' ? `${mapping.protocol} ${mapping.external}` : mapping.status === 'failed' ? `failed (${mapping.error})` : `off (${mapping.reason})`}`,
  );
  const pairs = d.pairs.slice(0, 12).map((p) => `${p.localType} -> ${p.remote.type} ${p.remote.address}:${p.remote.port} ${p.state}${p.failReason ? ` (${p.failReason})` : ''}${p.rttMs === undefined ? '' : `, ${Math.round(p.rttMs)} ms`}`);
  lines.push(`pairs       ${pairs.length ? pairs.join('\n            ') : 'none'}${d.pairs.length > 12 ? `\n            ... ${d.pairs.length - 12} more` : ''}`);
  const h = d.hardNat;
  if (h) {
    const tried = h.attempts.map(
      (a) =>
        `${a.strategy}: ${a.outcome}${a.plan ? `, ${a.packetsSent}/${a.plan.budget.packets} probes, ${a.socketsOpened}/${a.plan.sockets} sockets, claims ${Math.round(a.plan.expectedSuccess * 100)}%` : ''}`,
    );
    const consent = `consent ours ${h.consent.local ? 'yes' : 'no'}, theirs ${h.consent.remote ? 'yes' : 'no'}`;
    lines.push(`strategies  ${consent}${tried.length ? `\n            ${tried.join('\n            ')}` : ''}${h.notApplicable.length ? `\n            not for these NATs: ${h.notApplicable.join(', ')}` : ''}`);
  }
  lines.push(`checks      ${d.checks.requestsSent} requests sent, ${d.checks.responsesReceived} answered; ${d.checks.probesSent} probes sent, ${d.checks.probesAnswered} answered`);
  return lines.join('\n');
}
