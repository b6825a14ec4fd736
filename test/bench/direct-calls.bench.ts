/**
 * Direct calls (issue 16): 1:1 calls that start on the relay and move to a direct path, as
 * users make them (`wzp listen` and `wzp call` processes, test/lab/direct-call-lab.ts) between
 * the two clients of the P2P NAT lab (test/lab/p2p-lab.ts). All traffic stays inside the lab's
 * network namespaces.
 *
 * Per pair of NAT modes (every ordered pair of the five, one same-NAT pair, one IPv6 pair):
 * N calls of ~3 s on one lab, relay and pair of identities. One row each: calls connected,
 * calls that ended direct on both sides, whether direct is expected, answer -> first audio,
 * answer -> direct, the concealed frames around the switch to direct (from two frames before
 * the first side moved to 1 s after the switch: PathTimelineEntry.concealedFrames), and the selected pair's
 * candidate types. Then a cut scenario: ~8 s calls where the direct path is cut in the middle
 * of the call (lab.cutDirect()) and restored 3 s later: cut -> back on the relay, restore ->
 * back on direct, and the frames concealed at those switches. Last, the targets next to the
 * measured numbers.
 *
 * Targets: every call connects; direct rate 100% where expected; answer -> first audio
 * <= 100 ms; answer -> direct median <= 1 s; gap at the switch <= 1 concealed frame;
 * cut -> audio back via the relay <= 1 s.
 *
 * Env: WZP_BENCH_DIRECT_CALLS (calls per pair, default 10); WZP_BENCH_DIRECT_PAIRS (comma
 * separated substrings of row names: only matching rows run).
 */
import { percentile } from '../../core/media/analysis.js';
import type { PathTimelineEntry } from '../../core/client/direct-call.js';
import { type LabCallOutcome, type LabCallResult, type LabPerson, labCall, labPerson, labRelay } from '../lab/direct-call-lab.js';
import { NAT_MODES, type NatMode } from '../lab/netns.js';
import { P2P_NET, P2pLab, type P2pTopology, p2pLabAvailable } from '../lab/p2p-lab.js';
import { sleep } from '../helpers/wait.js';

export const name = 'direct: 1:1 calls from the relay to a direct path, per NAT pair (P2P lab)';

const CALLS = Math.max(1, Number(process.env.WZP_BENCH_DIRECT_CALLS ?? 10) || 10);
const FILTERS = (process.env.WZP_BENCH_DIRECT_PAIRS ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter((s) => s.length > 0);
const CALL_S = 3;
const CUT_CALL_S = 8;
/** After the caller's process starts: the answer (~1 s) and the move to direct (< 1 s) come first. */
const CUT_AFTER_START_MS = 3_000;
const CUT_FOR_MS = 3_000;
const CALL_TIMEOUT_MS = (s: number) => (s + 25) * 1000;
/** A pair's deadline: no new call starts after it (a running call is bounded by its own timeout). */
const PAIR_DEADLINE_MS = (s: number) => CALLS * (s + 20) * 1000 + 60_000;

const TARGET = { firstAudioMs: 100, toDirectMedianMs: 1000, gapFrames: 1, cutToRelayMs: 1000 } as const;

interface PairSpec {
  name: string;
  topology: P2pTopology;
  expectDirect: boolean;
  /** How the clients dial the relay, and where it listens (default: its IPv4 address). */
  relayAddress?: string;
}

const symmetric = (m: NatMode) => m.startsWith('symmetric');
/** Endpoint-independent mappings on both sides; or one symmetric side whose peer's NAT lets in any port of an address it sent to. */
function expectDirect(a: NatMode, b: NatMode): boolean {
  if (!symmetric(a) && !symmetric(b)) return true;
  if (symmetric(a) && symmetric(b)) return false;
  const other = symmetric(a) ? b : a;
  return other === 'full-cone' || other === 'address-restricted';
}

function pairSpecs(): PairSpec[] {
  const specs: PairSpec[] = [];
  for (const a of NAT_MODES) for (const b of NAT_MODES) specs.push({ name: `${a} x ${b}`, topology: { kind: 'two-nat', a, b }, expectDirect: expectDirect(a, b) });
  specs.push({ name: 'same-nat port-restricted', topology: { kind: 'same-nat', mode: 'port-restricted' }, expectDirect: true });
  specs.push({
    name: 'ipv6 symmetric-random x symmetric-random',
    topology: { kind: 'two-nat', a: 'symmetric-random', b: 'symmetric-random', ipv6: true },
    expectDirect: true,
    relayAddress: `[${P2P_NET.relay6}]:4433`,
  });
  return specs;
}

const CUT_SPECS: PairSpec[] = (
  [
    ['full-cone', 'port-restricted'],
    ['address-restricted', 'symmetric-sequential'],
  ] as const
).map(([a, b]) => ({ name: `cut ${a} x ${b}`, topology: { kind: 'two-nat', a, b }, expectDirect: true }));

const selected = (name: string) => FILTERS.length === 0 || FILTERS.some((f) => name.includes(f));

/** Totals over all rows, for the targets. */
const totals = {
  calls: 0,
  connected: 0,
  expectedConnected: 0,
  expectedDirect: 0,
  unexpectedConnected: 0,
  unexpectedDirect: 0,
  firstAudio: [] as number[],
  toDirect: [] as number[],
  gap: [] as number[],
  /** Frames concealed in the first 1.5 s of calls that went direct / stayed relayed (the control). */
  startConcealedDirect: [] as number[],
  startConcealedRelay: [] as number[],
  unvalidatedDrops: 0,
  cutToRelay: [] as number[],
  cutGap: [] as number[],
  restoreToDirect: [] as number[],
  restoreGap: [] as number[],
  cutsNotSeen: 0,
  restoresNotSeen: 0,
  cutBeforeDirect: 0,
};

const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : '-');
const medMax = (v: number[]) => (v.length === 0 ? '-' : `${fmt(percentile(v, 50))}/${fmt(Math.max(...v))}`);
const pct = (n: number, d: number) => (d === 0 ? '-' : `${((100 * n) / d).toFixed(0)}%`);

function mostCommon(values: string[]): string {
  if (values.length === 0) return '-';
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  const [top, n] = [...counts].sort((x, y) => y[1] - x[1])[0];
  return `${top} (${n}/${values.length})`;
}

const sides = (o: LabCallOutcome): LabCallResult[] => [o.caller, o.callee];
const firstSwitchTo = (r: LabCallResult, path: 'relay' | 'direct', fromMs = Number.NEGATIVE_INFINITY): PathTimelineEntry | undefined =>
  r.path.timeline.find((t) => t.event === 'switch' && t.path === path && t.atMs >= fromMs);

/** Runs up to `calls` calls on one lab; per call, the outcome or the error's first line. */
async function runPair(spec: PairSpec, durationS: number, during?: (lab: P2pLab) => Promise<void>, onCall?: (o: LabCallOutcome) => void) {
  const outcomes: (LabCallOutcome | string)[] = [];
  const deadline = performance.now() + PAIR_DEADLINE_MS(durationS);
  const lab = await P2pLab.create({ topology: spec.topology, coturn: false });
  try {
    const relay = await labRelay(lab, spec.relayAddress);
    const [a, b]: LabPerson[] = await Promise.all([labPerson('wzp-bench-direct-a-'), labPerson('wzp-bench-direct-b-')]);
    try {
      for (let i = 0; i < CALLS; i++) {
        if (performance.now() > deadline) {
          outcomes.push('pair deadline passed: call not started');
          continue;
        }
        try {
          const outcome = await labCall(lab, {
            relay,
            ...(spec.relayAddress ? { relayAddress: spec.relayAddress } : {}),
            a,
            b,
            durationS,
            timeoutMs: CALL_TIMEOUT_MS(durationS),
            ...(during ? { during: () => during(lab).then(() => undefined) } : {}),
          });
          outcomes.push(outcome);
          onCall?.(outcome);
        } catch (err) {
          outcomes.push(((err as Error).message ?? String(err)).split('\n').slice(0, 3).join(' | '));
        } finally {
          await lab.restoreDirect().catch(() => undefined);
        }
      }
    } finally {
      a.home.cleanup();
      b.home.cleanup();
    }
  } finally {
    await lab.destroy();
  }
  return outcomes;
}

interface CutWall {
  cut?: number;
  restore?: number;
}

function printFailures(outcomes: (LabCallOutcome | string)[]): void {
  outcomes.forEach((o, i) => {
    if (typeof o === 'string') console.log(`      call ${i + 1} failed: ${o.slice(0, 400)}`);
  });
}

async function directPair(spec: PairSpec): Promise<void> {
  let outcomes: (LabCallOutcome | string)[];
  try {
    outcomes = await runPair(spec, CALL_S);
  } catch (err) {
    console.log(`   ${spec.name.padEnd(44)} lab/relay failed: ${(err as Error).message.split('\n')[0]}`);
    totals.calls += CALLS;
    return;
  }
  const ok = outcomes.filter((o): o is LabCallOutcome => typeof o !== 'string');
  const direct = ok.filter((o) => o.caller.path.final === 'direct' && o.callee.path.final === 'direct');
  const firstAudio: number[] = [];
  const firstAudioBySide = { caller: [] as number[], callee: [] as number[] };
  const toDirect: number[] = [];
  const gap: number[] = [];
  const types: string[] = [];
  // Context for the gap: what the call's first 1.5 s conceal (on relay-only pairs, with no
  // switch in them, that is the background the gap compares with), and direct media a side
  // dropped because it came from an address it had not validated yet (a switch's own loss).
  const startConcealed: number[] = [];
  let unvalidatedDrops = 0;
  for (const o of ok) {
    for (const [side, r] of [['caller', o.caller], ['callee', o.callee]] as const) {
      if (r.path.startConcealedFrames !== undefined) startConcealed.push(r.path.startConcealedFrames);
      unvalidatedDrops += r.path.direct?.media?.drops?.unknownSource ?? 0;
      const fa = r.path.timeline.find((t) => t.event === 'first-audio');
      if (fa) firstAudio.push(fa.atMs);
      if (fa) firstAudioBySide[side].push(fa.atMs);
      if (r.path.timeToDirectMs !== undefined) toDirect.push(r.path.timeToDirectMs);
      const sw = firstSwitchTo(r, 'direct');
      if (sw?.concealedFrames !== undefined) gap.push(sw.concealedFrames);
      if (r.path.direct?.selected) types.push(r.path.direct.selected.types);
    }
  }
  totals.calls += outcomes.length;
  totals.connected += ok.length;
  if (spec.expectDirect) {
    totals.expectedConnected += ok.length;
    totals.expectedDirect += direct.length;
  } else {
    totals.unexpectedConnected += ok.length;
    totals.unexpectedDirect += direct.length;
  }
  totals.firstAudio.push(...firstAudio);
  totals.toDirect.push(...toDirect);
  totals.gap.push(...gap);
  const flag = spec.expectDirect ? (direct.length < ok.length ? ' <- not all direct' : '') : direct.length > 0 ? ' <- direct where relay expected' : '';
  console.log(
    `   ${spec.name.padEnd(44)} ${(spec.expectDirect ? 'direct' : 'relay').padEnd(6)} ${`${ok.length}/${outcomes.length}`.padStart(5)} ` +
      `${`${direct.length}/${ok.length}`.padStart(6)} ${medMax(firstAudio).padStart(9)} ${medMax(toDirect).padStart(10)} ${medMax(gap).padStart(7)}  ${mostCommon(types)}${flag}`,
  );
  console.log(`      (first audio caller ${medMax(firstAudioBySide.caller)}, callee ${medMax(firstAudioBySide.callee)} ms; gaps [${gap.join(' ')}])`);
  console.log(`      (concealed in the first 1.5 s ${medMax(startConcealed)} frames [${startConcealed.join(' ')}]; direct media from unvalidated addresses dropped: ${unvalidatedDrops})`);
  (spec.expectDirect ? totals.startConcealedDirect : totals.startConcealedRelay).push(...startConcealed);
  totals.unvalidatedDrops += unvalidatedDrops;
  printFailures(outcomes);
}

async function cutPair(spec: PairSpec): Promise<void> {
  const cutToRelay: number[] = [];
  const restoreToDirect: number[] = [];
  const cutGap: number[] = [];
  const restoreGap: number[] = [];
  const cutAt: number[] = [];
  let notSeen = 0;
  let notBack = 0;
  let beforeDirect = 0;
  let wall: CutWall = {};
  let outcomes: (LabCallOutcome | string)[];
  try {
    outcomes = await runPair(
      spec,
      CUT_CALL_S,
      async (lab) => {
        wall = {};
        await sleep(CUT_AFTER_START_MS);
        await lab.cutDirect();
        wall.cut = Date.now();
        await sleep(CUT_FOR_MS);
        await lab.restoreDirect();
        wall.restore = Date.now();
      },
      (o) => {
        for (const r of sides(o)) {
          if (wall.cut === undefined || wall.restore === undefined) continue;
          const answered = Date.parse(r.path.answeredAt);
          const cutMs = wall.cut - answered;
          const restoreMs = wall.restore - answered;
          cutAt.push(cutMs);
          if (r.path.timeToDirectMs === undefined || r.path.timeToDirectMs > cutMs) beforeDirect++;
          const toRelay = firstSwitchTo(r, 'relay', cutMs - 50);
          if (toRelay && toRelay.atMs < restoreMs) {
            cutToRelay.push(Math.max(0, toRelay.atMs - cutMs));
            if (toRelay.concealedFrames !== undefined) cutGap.push(toRelay.concealedFrames);
          } else notSeen++;
          const back = firstSwitchTo(r, 'direct', restoreMs - 50);
          if (back) {
            restoreToDirect.push(Math.max(0, back.atMs - restoreMs));
            if (back.concealedFrames !== undefined) restoreGap.push(back.concealedFrames);
          } else notBack++;
        }
      },
    );
  } catch (err) {
    console.log(`   ${spec.name.padEnd(44)} lab/relay failed: ${(err as Error).message.split('\n')[0]}`);
    totals.calls += CALLS;
    return;
  }
  const ok = outcomes.filter((o) => typeof o !== 'string').length;
  totals.calls += outcomes.length;
  totals.connected += ok;
  totals.cutToRelay.push(...cutToRelay);
  totals.cutGap.push(...cutGap);
  totals.restoreToDirect.push(...restoreToDirect);
  totals.restoreGap.push(...restoreGap);
  totals.cutsNotSeen += notSeen;
  totals.restoresNotSeen += notBack;
  totals.cutBeforeDirect += beforeDirect;
  console.log(
    `   ${spec.name.padEnd(44)} ${`${ok}/${outcomes.length}`.padStart(5)}  cut at ${medMax(cutAt)} ms after answer; ` +
      `cut -> relay ${medMax(cutToRelay)} ms (${cutToRelay.length}/${2 * ok} sides, gap ${medMax(cutGap)} frames); ` +
      `restore -> direct ${medMax(restoreToDirect)} ms (${restoreToDirect.length}/${2 * ok} sides, gap ${medMax(restoreGap)} frames)` +
      `${beforeDirect ? `; ${beforeDirect} sides not yet direct at the cut` : ''}`,
  );
  printFailures(outcomes);
}

function ratio(measured: number, target: number): string {
  return Number.isFinite(measured) ? `${(measured / target).toFixed(2)}` : '-';
}

function printTargets(): void {
  const t = totals;
  const directRate = t.expectedConnected === 0 ? Number.NaN : t.expectedDirect / t.expectedConnected;
  const connectRate = t.calls === 0 ? Number.NaN : t.connected / t.calls;
  const fa50 = t.firstAudio.length ? percentile(t.firstAudio, 50) : Number.NaN;
  const faMax = t.firstAudio.length ? Math.max(...t.firstAudio) : Number.NaN;
  const td50 = t.toDirect.length ? percentile(t.toDirect, 50) : Number.NaN;
  const gapMax = t.gap.length ? Math.max(...t.gap) : Number.NaN;
  const gap50 = t.gap.length ? percentile(t.gap, 50) : Number.NaN;
  const cut50 = t.cutToRelay.length ? percentile(t.cutToRelay, 50) : Number.NaN;
  const cutMax = t.cutToRelay.length ? Math.max(...t.cutToRelay) : Number.NaN;
  console.log('   targets (measured vs target, ratio measured/target):');
  console.log(`     every call connects:       ${t.connected}/${t.calls} = ${pct(t.connected, t.calls)} vs 100% (ratio ${ratio(connectRate, 1)})`);
  console.log(`     direct where expected:     ${t.expectedDirect}/${t.expectedConnected} = ${pct(t.expectedDirect, t.expectedConnected)} vs 100% (ratio ${ratio(directRate, 1)}); ` + `direct where relay expected: ${t.unexpectedDirect}/${t.unexpectedConnected}`);
  console.log(`     answer -> first audio:     median ${fmt(fa50)} ms, max ${fmt(faMax)} ms vs <= ${TARGET.firstAudioMs} ms (ratio median ${ratio(fa50, TARGET.firstAudioMs)}, max ${ratio(faMax, TARGET.firstAudioMs)}; ${t.firstAudio.length} sides)`);
  console.log(`     answer -> direct:          median ${fmt(td50)} ms, max ${fmt(t.toDirect.length ? Math.max(...t.toDirect) : Number.NaN)} ms vs median <= ${TARGET.toDirectMedianMs} ms (ratio ${ratio(td50, TARGET.toDirectMedianMs)}; ${t.toDirect.length} sides)`);
  console.log(`     gap at the upgrade:        median ${fmt(gap50)}, max ${fmt(gapMax)} concealed frames vs <= ${TARGET.gapFrames} (ratio max ${ratio(gapMax, TARGET.gapFrames)}; ${t.gap.length} switches)`);
  const bg = (xs: number[]) => (xs.length ? `median ${fmt(percentile(xs, 50))}, max ${fmt(Math.max(...xs))}, ${xs.filter((x) => x > TARGET.gapFrames).length}/${xs.length} calls over ${TARGET.gapFrames}` : 'none');
  console.log(`       control, first 1.5 s:    relayed calls (no switch) ${bg(t.startConcealedRelay)}; direct calls ${bg(t.startConcealedDirect)}; direct media dropped as unvalidated: ${t.unvalidatedDrops}`);
  if (t.cutToRelay.length + t.cutsNotSeen > 0) {
    console.log(
      `     cut -> relay:              median ${fmt(cut50)} ms, max ${fmt(cutMax)} ms vs <= ${TARGET.cutToRelayMs} ms (ratio max ${ratio(cutMax, TARGET.cutToRelayMs)}; ` +
        `${t.cutToRelay.length} sides, ${t.cutsNotSeen} without a switch to relay during the cut, ${t.cutBeforeDirect} not yet direct at the cut); ` +
        `concealed at those switches median ${fmt(t.cutGap.length ? percentile(t.cutGap, 50) : Number.NaN)}, max ${fmt(t.cutGap.length ? Math.max(...t.cutGap) : Number.NaN)}`,
    );
    console.log(
      `     restore -> direct (info):  median ${fmt(t.restoreToDirect.length ? percentile(t.restoreToDirect, 50) : Number.NaN)} ms, max ${fmt(t.restoreToDirect.length ? Math.max(...t.restoreToDirect) : Number.NaN)} ms ` +
        `(${t.restoreToDirect.length} sides, ${t.restoresNotSeen} not back on direct before the call ended)`,
    );
  }
}

export async function run(): Promise<void> {
  const available = await p2pLabAvailable();
  if (!available.ok) {
    console.log(`   skipped: ${available.reason}`);
    return;
  }
  const pairs = pairSpecs().filter((s) => selected(s.name));
  const cuts = CUT_SPECS.filter((s) => selected(s.name));
  console.log(`   ${CALLS} calls of ${CALL_S} s per pair (WZP_BENCH_DIRECT_CALLS)${FILTERS.length ? `, rows matching ${FILTERS.join(', ')}` : ''}; ms are from the answer; med/max over both sides of all calls`);
  if (pairs.length > 0) {
    console.log(`   ${'pair (caller A x callee B)'.padEnd(44)} expect  conn direct  ans->aud ans->direct gap(fr)  selected pair (most common)`);
    for (const spec of pairs) await directPair(spec);
  }
  if (cuts.length > 0) {
    console.log(`   cut scenario: ${CALLS} calls of ${CUT_CALL_S} s; direct path cut ${CUT_AFTER_START_MS / 1000} s after the caller starts, restored ${CUT_FOR_MS / 1000} s later`);
    for (const spec of cuts) await cutPair(spec);
  }
  printTargets();
}
