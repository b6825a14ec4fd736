/**
 * Hard NATs (issue 17): real 1:1 calls (`wzp listen`, `wzp call --to`) between the two clients
 * of the P2P NAT lab, both asking the wan's four STUN endpoints so their NAT profiles are
 * measured, with the installed hard-NAT strategies. All traffic stays inside the lab's network
 * namespaces.
 *
 * The 5 x 5 matrix of NAT modes: per ordered pair, calls connected, calls direct on both sides,
 * the strategy that found the pair (most common), answer -> direct (median/max), and for the
 * winning attempts the packets and sockets each side used next to its plan's budget. The pairs
 * a strategy should take direct (a port-restricted side facing a symmetric one) and the
 * sequential x sequential pair get WZP_BENCH_HARDNAT_CALLS calls each (default 20) of 8 s;
 * the others WZP_BENCH_HARDNAT_OTHER_CALLS (default 20) of 3 s, for "every call connects"
 * (the whole matrix at the defaults takes about an hour on the 2-core VM).
 *
 * Targets: sequential x port-restricted >= 95% direct; symmetric-random x port-restricted
 * >= 95% direct within 10 s of the answer (calls last 8 s: later counts as not direct);
 * every call in all 25 pairs connects.
 *
 * Env: WZP_BENCH_HARDNAT_CALLS, WZP_BENCH_HARDNAT_OTHER_CALLS, WZP_BENCH_HARDNAT_PAIRS (comma
 * separated substrings of row names: only matching rows run).
 */
import { percentile } from '../../core/media/analysis.js';
import type { StrategyAttemptReport } from '../../core/p2p/hard-nat.js';
import { type LabCallOutcome, type LabCallResult, labCall, labPerson, labRelay } from '../lab/direct-call-lab.js';
import { NAT_MODES, type NatMode } from '../lab/netns.js';
import { P2P_NET, P2pLab, p2pLabAvailable } from '../lab/p2p-lab.js';

export const name = 'hard-nat: the 5 x 5 NAT matrix with the hard-NAT strategies (P2P lab)';

const count = (v: string | undefined, d: number) => Math.max(1, Number(v ?? d) || d);
const CALLS = count(process.env.WZP_BENCH_HARDNAT_CALLS, 20);
const OTHER_CALLS = count(process.env.WZP_BENCH_HARDNAT_OTHER_CALLS, 20);
const FILTERS = (process.env.WZP_BENCH_HARDNAT_PAIRS ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter((s) => s.length > 0);
const FOUR_STUN = ['--stun', [P2P_NET.relay, P2P_NET.alternate].flatMap((ip) => [P2P_NET.stunPort, P2P_NET.stunPort + 1].map((port) => `${ip}:${port}`)).join(',')];
const TARGET_DIRECT = 0.95;
const WITHIN_MS = 10_000;

/** The strategy expected to take the pair direct (the checks alone cannot). */
function expectedStrategy(a: NatMode, b: NatMode): 'sequential' | 'birthday' | undefined {
  const pair = [a, b];
  if (!pair.includes('port-restricted')) return undefined;
  if (pair.includes('symmetric-sequential')) return 'sequential';
  if (pair.includes('symmetric-random')) return 'birthday';
  return undefined;
}

const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : '-');
const medMax = (v: number[]) => (v.length === 0 ? '-' : `${fmt(percentile(v, 50))}/${fmt(Math.max(...v))}`);

function mostCommon(values: string[]): string {
  if (values.length === 0) return '-';
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  const [top, n] = [...counts].sort((x, y) => y[1] - x[1])[0];
  return `${top} ${n}/${values.length}`;
}

const winner = (r: LabCallResult): StrategyAttemptReport | undefined => (r.path.direct?.hardNat?.attempts as StrategyAttemptReport[] | undefined)?.find((t) => t.outcome === 'succeeded');

const totals = { calls: 0, connected: 0, targetRows: [] as string[] };

async function runRow(a: NatMode, b: NatMode, calls: number, durationS: number): Promise<void> {
  const label = `${a} x ${b}`;
  const outcomes: (LabCallOutcome | string)[] = [];
  const lab = await P2pLab.create({ topology: { kind: 'two-nat', a, b }, coturn: true });
  try {
    const relay = await labRelay(lab);
    const [pa, pb] = await Promise.all([labPerson('wzp-bench-hn-a-'), labPerson('wzp-bench-hn-b-')]);
    try {
      for (let i = 0; i < calls; i++) {
        try {
          outcomes.push(await labCall(lab, { relay, a: pa, b: pb, durationS, timeoutMs: (durationS + 30) * 1000, callerArgs: FOUR_STUN, listenerArgs: FOUR_STUN }));
        } catch (err) {
          outcomes.push(((err as Error).message ?? String(err)).split('\n').slice(0, 2).join(' | '));
        }
      }
    } finally {
      pa.home.cleanup();
      pb.home.cleanup();
    }
  } finally {
    await lab.destroy();
  }
  const ok = outcomes.filter((o): o is LabCallOutcome => typeof o !== 'string');
  const direct = ok.filter((o) => o.caller.path.final === 'direct' && o.callee.path.final === 'direct');
  const within = direct.filter((o) => Math.max(o.caller.path.timeToDirectMs ?? Infinity, o.callee.path.timeToDirectMs ?? Infinity) <= WITHIN_MS);
  const toDirect = direct.flatMap((o) => [o.caller.path.timeToDirectMs, o.callee.path.timeToDirectMs]).filter((x): x is number => x !== undefined);
  const wins = ok.flatMap((o) => [winner(o.caller), winner(o.callee)]).filter((w): w is StrategyAttemptReport => w !== undefined);
  // Per side of a winning attempt: what it sent and opened next to its plan's budget.
  const usage = wins
    .filter((w) => w.plan)
    .map((w) => `${w.packetsSent}/${w.plan!.budget.packets}p ${w.socketsOpened}/${w.plan!.sockets}s`);
  const hard = wins.filter((w) => (w.plan?.sockets ?? 0) > 0);
  const easy = wins.filter((w) => (w.plan?.sockets ?? 0) === 0 && w.plan);
  const side = (ws: StrategyAttemptReport[]) =>
    ws.length === 0 ? '-' : `packets ${medMax(ws.map((w) => w.packetsSent))} of ${fmt(percentile(ws.map((w) => w.plan!.budget.packets), 50))}, sockets ${medMax(ws.map((w) => w.socketsOpened))} of ${fmt(percentile(ws.map((w) => w.plan!.sockets), 50))}`;
  totals.calls += outcomes.length;
  totals.connected += ok.length;
  const expected = expectedStrategy(a, b);
  const rate = ok.length === 0 ? 0 : within.length / outcomes.length;
  if (expected) totals.targetRows.push(`${label}: ${within.length}/${outcomes.length} direct within ${WITHIN_MS / 1000} s = ${(rate * 100).toFixed(0)}% vs >= ${TARGET_DIRECT * 100}% (ratio ${(rate / TARGET_DIRECT).toFixed(2)})`);
  console.log(
    `   ${label.padEnd(44)} ${`${ok.length}/${outcomes.length}`.padStart(6)} ${`${direct.length}/${ok.length}`.padStart(7)} ${medMax(toDirect).padStart(11)}  ${mostCommon(wins.map((w) => w.strategy)).padEnd(16)} ${expected ? `(expect ${expected})` : ''}`,
  );
  if (wins.length > 0) console.log(`      per winning side: hard half ${side(hard)}; easy half ${side(easy)}; e.g. ${usage.slice(0, 2).join(', ')}`);
  outcomes.forEach((o, i) => {
    if (typeof o === 'string') console.log(`      call ${i + 1} failed: ${o.slice(0, 300)}`);
  });
}

export async function run(): Promise<void> {
  const available = await p2pLabAvailable();
  if (!available.ok) {
    console.log(`   skipped: ${available.reason}`);
    return;
  }
  console.log(
    `   ${CALLS} calls of 8 s per strategy pair and sequential x sequential (WZP_BENCH_HARDNAT_CALLS), ${OTHER_CALLS} of 3 s per other pair (WZP_BENCH_HARDNAT_OTHER_CALLS); both sides ask four STUN endpoints`,
  );
  console.log(`   ${'pair (caller A x callee B)'.padEnd(44)}   conn  direct  ans->direct  strategy (wins/sides)`);
  for (const a of NAT_MODES) {
    for (const b of NAT_MODES) {
      const label = `${a} x ${b}`;
      if (FILTERS.length > 0 && !FILTERS.some((f) => label.includes(f))) continue;
      const focus = expectedStrategy(a, b) !== undefined || (a === 'symmetric-sequential' && b === 'symmetric-sequential');
      await runRow(a, b, focus ? CALLS : OTHER_CALLS, focus ? 8 : 3);
    }
  }
  console.log('   targets (measured vs target):');
  console.log(`     every call connects: ${totals.connected}/${totals.calls}${totals.calls ? ` = ${((100 * totals.connected) / totals.calls).toFixed(0)}%` : ''} vs 100%`);
  for (const row of totals.targetRows) console.log(`     ${row}`);
}
