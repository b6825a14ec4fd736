/**
 * How `wzp call` and `wzp record` show a call as it happens and when it ends: one renderer
 * for both. Events become progress lines (joins, members, tier changes, the relay lost and
 * regained), warnings (kept in the JSON document's warnings: support teams read those) and,
 * on a terminal, a live status line.
 */
import type { CallEvent, CallStatus, MemberTrust, ParticipantReport } from '../../core/client/call.js';
import { shortFingerprint } from '../../core/crypto/fingerprint.js';
import type { CallResult } from './call.js';

/** Where the renderer writes: the command's own output methods. */
export interface CallEventOutput {
  /** A line of progress for humans (stderr; nothing with --json). */
  progress(line: string): void;
  /** A warning (the JSON document's warnings, or stderr). */
  warn(message: string): void;
  /** A TTY without --json: the status line is drawn, and lines clear it first. */
  interactive: boolean;
  /** Rewrite the terminal's current line (the status line). */
  rewriteLine(text: string): void;
}

/** An onEvent handler for runCall that shows the call on `out`. */
export function callEventRenderer(out: CallEventOutput): (e: CallEvent) => void {
  return (e) => {
    if (e.type === 'call:status') {
      if (out.interactive) out.rewriteLine(statusLine(e.status));
      return;
    }
    if (e.type === 'call:warning' || e.type === 'call:member-refused' || (e.type === 'call:relay-draining' && !e.moving)) {
      if (out.interactive) out.rewriteLine('');
      out.warn(e.type === 'call:relay-draining' ? drainingText(e) : e.message);
      return;
    }
      if (out.interactive) out.rewriteLine('');
    const line = eventLine(e);
    if (line === undefined) return;
    if (out.interactive) out.rewriteLine('');
    out.progress(line);
  };
}

/** The live status line: tier, round trip, loss, jitter buffer, MOS, members, who is talking. */
export function statusLine(s: CallStatus): string {
  if (s.link === 'reconnecting') return 'reconnecting to the relay...';
  const ms = (x: number | undefined) => (x === undefined ? '-' : `${x < 10 ? x.toFixed(1) : Math.round(x)} ms`);
  const talking = s.talking.length ? `  talking: ${s.talking.join(', ')}` : '';
  const path = s.path === undefined ? '' : s.path.kind === 'direct' ? `direct (${s.path.pair})  ` : 'via relay  ';
  return `${path}${s.tier}  rtt ${ms(s.rttMs)} (relay ${ms(s.relayRttMs)})  loss ${s.lossPct}%  jb ${s.jitterBufferMs} ms  MOS ${s.mos ?? '-'}  ${s.members} in room${talking}`;
}

/** The progress line for an event, if it has one. */
export function eventLine(e: CallEvent): string | undefined {
  switch (e.type) {
    case 'call:joined':
      return `joined room ${e.room} (${e.participants} in room)`;
    case 'call:tier-changed':
      return `tier ${e.from} -> ${e.to}: ${e.reason}`;
    default:
      return memberLine(e) ?? relayLine(e);
  }
}

const TRUST_TEXT: Record<MemberTrust, string> = {
  allowed: 'allowed: on your --allow list',
  known: 'known: met in an earlier call',
  new: 'new: first meeting',
};

/** How a member is named on a line: its alias, else its short fingerprint. */
function memberLabel(m: { alias: string; fingerprint: string }): string {
  return m.alias || shortFingerprint(m.fingerprint);
}

/**
 * The lines for members joining, leaving and coming back: each names the member's full
 * fingerprint and how far it is trusted; a first meeting says once that the member is now
 * pinned, as ssh says "permanently added".
 */
export function memberLine(e: CallEvent): string | undefined {
  switch (e.type) {
    case 'call:member-joined': {
      const since = e.trust === 'known' && e.firstSeen ? ` since ${e.firstSeen.slice(0, 10)}` : '';
      const line = `${memberLabel(e)} joined (${TRUST_TEXT[e.trust]}${since})\n  fingerprint ${e.fingerprint}`;
      return e.trust === 'new'
        ? `${line}\n  permanently added ${e.fingerprint} to the known members: compare it with ${memberLabel(e)} over another channel before trusting it`
        : line;
    }
    case 'call:member-left':
      return `${memberLabel(e)} left (${e.fingerprint})`;
    case 'call:member-reconnected':
      return `${memberLabel(e)} is back (reconnected), ${e.trust}: ${e.fingerprint}`;
    default:
      return undefined;
  }
}

/** The lines for losing, leaving (drain) and regaining the relay. */
export function relayLine(e: CallEvent): string | undefined {
  if (e.type === 'call:relay-lost') return `${e.reason.endsWith('is draining') ? 'leaving' : 'lost'} the relay: ${e.reason}${e.reconnecting ? '; reconnecting' : ''}`;
  if (e.type === 'call:relay-draining') return drainingText(e);
  if (e.type === 'call:reconnected') {
    const detail = `${e.attempts} attempt${e.attempts === 1 ? '' : 's'}, ${e.participants} in room`;
    return e.relay === undefined
      ? `back on the relay after ${(e.outageMs / 1000).toFixed(1)} s (${detail})`
      : `on relay ${e.relay} after ${(e.outageMs / 1000).toFixed(1)} s (${e.reason === 'drain' ? 'moved: the last one drained' : 'the last one was lost'}; ${detail})`;
  }
  return undefined;
}

/** A relay's drain notice, as a line: moving on now, or staying until it stops. */
function drainingText(e: Extract<CallEvent, { type: 'call:relay-draining' }>): string {
  const which = e.relay === undefined ? 'the relay' : `relay ${e.relay}`;
  const within = `${Math.round(e.deadlineMs / 1000)} s`;
  return e.moving
    ? `${which} is draining (stopping within ${within}): moving to the next relay`
    : `${which} is draining (stopping within ${within}); this call has no other relay: it stays until the relay stops, then tries to get back (give several relays, RELAY1,RELAY2, to move on)`;
}

/** One summary line per move or reconnection of a call (call and record summaries). */
export function reconnectLines(r: CallResult): string[] {
  return r.reconnects.map((c) => {
    const at = `  at ${(c.atMs / 1000).toFixed(1)} s: `;
    const gap = `${(c.outageMs / 1000).toFixed(1)} s`;
    if (c.reason === 'drain') return `${at}the relay drained: moved to ${c.relay ?? 'the next relay'} (gap ${gap})`;
    return `${at}lost the relay, back${c.relay !== undefined && r.relays.length > 1 ? ` on ${c.relay}` : ''} after ${gap}`;
  });
}

/** The summary's lines for the members (with their trust and fingerprint) and those refused. */
export function membersSummary(r: CallResult, detail: (p: ParticipantReport) => string = () => ''): string[] {
  const lines: string[] = [];
  for (const p of r.participants) {
    lines.push(`  ${memberLabel(p)} [${p.trust}] ${p.fingerprint}${p.left ? ' (left)' : ''}`);
    const more = detail(p);
    if (more) lines.push(`    ${more}`);
  }
  if (r.participantsNotListed) lines.push(`  ... and ${r.participantsNotListed} more sessions that left`);
  for (const x of r.refused) {
    lines.push(`  refused ${x.alias ? `"${x.alias}" ` : ''}${x.fingerprint || '(no fingerprint)'}: ${x.reason}${x.times > 1 ? ` (${x.times} times)` : ''}`);
  }
  if (r.refusedNotListed) lines.push(`  ... and ${r.refusedNotListed} more refused announcements`);
  return lines;
}
