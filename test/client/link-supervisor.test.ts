/**
 * LinkSupervisor under a manual clock, with links that answer (or not) as each test says.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AbortError, FingerprintMismatchError, NetworkError } from '../../core/errors.js';
import {
  DEFAULT_RECONNECT_FOR_MS,
  LinkSupervisor,
  PROBE_TIMEOUT_MS,
  RECONNECT_ATTEMPT_MS,
  RECONNECT_BACKOFF_MS,
  RTT_PING_INTERVAL_MS,
  STALL_MS,
  type LinkSupervisorOptions,
  type SupervisedLink,
} from '../../core/client/link-supervisor.js';
import { ManualClock, settle } from './manual-clock.js';

class FakeLink implements SupervisedLink {
  pings = 0;
  closes = 0;
  /** How the next pings go: answered, or failed (no pong in time). */
  pingAnswers = true;
  rtts: (number | undefined)[] = [];
  #resolveClosed!: () => void;
  readonly closed = new Promise<void>((r) => (this.#resolveClosed = r));

  constructor(readonly name: string) {}

  async ping(): Promise<unknown> {
    this.pings++;
    if (!this.pingAnswers) throw new NetworkError('no pong');
    return 1;
  }

  async mediaRtt(): Promise<number | undefined> {
    return this.rtts.shift();
  }

  async close(): Promise<void> {
    this.closes++;
    this.#resolveClosed();
  }

  /** The connection went away by itself. */
  drop(): void {
    this.#resolveClosed();
  }
}

function setup(opts: Partial<LinkSupervisorOptions<FakeLink>> = {}) {
  const clock = new ManualClock();
  const first = new FakeLink('first');
  const lost: { reason: string; reconnecting: boolean; at: number }[] = [];
  const reconnected: { outageMs: number; attempts: number; participants: number }[] = [];
  const warnings: string[] = [];
  const rejoined: FakeLink[] = [];
  const s = new LinkSupervisor<FakeLink>({
    session: first,
    clock,
    rejoin: async (link) => {
      rejoined.push(link);
      return 3;
    },
    onLost: (reason, reconnecting) => lost.push({ reason, reconnecting, at: clock.now() }),
    onReconnected: (e) => reconnected.push(e),
    onWarning: (m) => warnings.push(m),
    ...opts,
  });
  s.started(clock.now());
  s.watch(first);
  return { s, clock, first, lost, reconnected, warnings, rejoined };
}

/** Move the clock on in steps of `step` ms, letting promises run and ticking the supervisor. */
async function run(clock: ManualClock, s: LinkSupervisor<FakeLink>, ms: number, step = 10): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    clock.advance(step);
    s.tick(clock.now());
    await settle();
  }
}

describe('link supervision (manual clock)', () => {
  test('the relay leg is timed every RTT_PING_INTERVAL_MS: the median of the last five, every sample in the summary', async () => {
    const { s, clock, first } = setup();
    first.rtts = [10, 50, 20, 30, 40, 12, 14];
    assert.equal(s.relayRtt(), undefined);
    assert.equal(s.rttSummary(), undefined);
    await run(clock, s, RTT_PING_INTERVAL_MS * 7 - 5);
    // Seven probes (one per interval, the first at once): median of the last five 20, 30, 40, 12, 14.
    assert.equal(s.relayRtt(), 20);
    const summary = s.rttSummary()!;
    assert.equal(summary.samples, 7);
    assert.equal(summary.max, 50);
    // A probe that got no answer is no sample.
    first.rtts = [undefined];
    await run(clock, s, RTT_PING_INTERVAL_MS);
    assert.equal(s.rttSummary()!.samples, 7);
  });

  test('a quiet link is pinged after STALL_MS; an answer keeps it, and what is heard postpones the next ping', async () => {
    const { s, clock, first, lost } = setup({ reconnect: async () => new FakeLink('next') });
    await run(clock, s, STALL_MS - 20);
    assert.equal(first.pings, 0);
    await run(clock, s, 40);
    assert.equal(first.pings, 1);
    assert.equal(s.link, 'up');
    // Heard from it regularly: no more pings.
    for (let i = 0; i < 10; i++) {
      await run(clock, s, 1000);
      s.heard(first);
    }
    assert.equal(first.pings, 1);
    assert.deepEqual(lost, []);
  });

  test('no pong: the link is lost and re-opened; the new link is joined and the outage reported', async () => {
    const links = [new FakeLink('next'), new FakeLink('after')];
    const next = links[0];
    let opened = 0;
    const { s, clock, first, lost, reconnected, rejoined } = setup({
      reconnect: async () => links[opened++],
    });
    first.pingAnswers = false;
    await run(clock, s, STALL_MS + 20);
    assert.equal(lost.length, 1);
    assert.match(lost[0].reason, /answered nothing for 4\.5 s/);
    assert.equal(lost[0].reconnecting, true);
    assert.equal(first.closes, 1);
    await run(clock, s, 20);
    assert.equal(opened, 1);
    assert.deepEqual(rejoined, [next]);
    assert.equal(s.session, next);
    assert.equal(s.link, 'up');
    assert.equal(reconnected.length, 1);
    assert.equal(reconnected[0].attempts, 1);
    assert.equal(reconnected[0].participants, 3);
    assert.equal(s.reconnects.length, 1);
    assert.ok(s.reconnects[0].atMs >= STALL_MS && s.reconnects[0].atMs <= STALL_MS + 30, JSON.stringify(s.reconnects));
    // The old link is not ours any more: its late news changes nothing.
    s.heard(first);
    first.drop();
    await settle();
    assert.equal(lost.length, 1);
    // The new one is watched.
    next.drop();
    await settle();
    assert.equal(lost.length, 2);
    assert.match(lost[1].reason, /closed/);
    assert.equal(s.session, links[1]);
    s.stop();
  });

  test('failed attempts back off 250, 500, 1000, 2000, 2000 ms; the attempt that works ends it', async () => {
    const next = new FakeLink('next');
    const attemptsAt: number[] = [];
    let failures = 6;
    const { s, clock, first, reconnected, warnings } = setup({
      reconnect: async () => {
        attemptsAt.push(clock.now());
        if (failures-- > 0) throw new NetworkError('connection refused');
        return next;
      },
    });
    first.drop();
    await run(clock, s, 10_000, 5);
    assert.equal(attemptsAt.length, 7);
    const gaps = attemptsAt.slice(1).map((t, i) => t - attemptsAt[i]);
    const expected = [250, 500, 1000, 2000, 2000, 2000];
    for (const [i, gap] of gaps.entries()) assert.ok(gap >= expected[i] && gap <= expected[i] + 10, `gap ${i}: ${gap} (${JSON.stringify(gaps)})`);
    assert.equal(warnings.length, 6);
    assert.match(warnings[0], /reconnect attempt 1 failed: connection refused/);
    assert.equal(reconnected[0].attempts, 7);
    assert.equal(s.link, 'up');
    assert.ok(RECONNECT_BACKOFF_MS.length === 4);
  });

  test('it gives up after reconnectForMs; an attempt that hangs is cut at RECONNECT_ATTEMPT_MS', async () => {
    const signals: AbortSignal[] = [];
    const { s, clock, first, warnings, lost } = setup({
      reconnectForMs: 10_000,
      reconnect: (signal) =>
        new Promise((_, reject) => {
          signals.push(signal);
          signal.addEventListener('abort', () => reject(new AbortError('aborted')));
        }),
    });
    first.drop();
    await run(clock, s, 12_000, 20);
    assert.equal(lost.length, 1);
    assert.ok(s.gaveUp);
    // 4 s, back-off 250 ms, 4 s, back-off 500 ms, then the 1.25 s left.
    assert.equal(signals.length, 3);
    assert.ok(signals.every((sig) => sig.aborted));
    assert.match(warnings[0], /no answer within 4 s/);
    assert.equal(DEFAULT_RECONNECT_FOR_MS, 30_000);
    assert.equal(RECONNECT_ATTEMPT_MS, 4000);
  });

  test('another certificate at the relay\'s address is not retried', async () => {
    let attempts = 0;
    const { s, clock, first, warnings } = setup({
      reconnect: async () => {
        attempts++;
        throw new FingerprintMismatchError('relay presented certificate ffff');
      },
    });
    first.drop();
    await run(clock, s, 5000, 50);
    assert.equal(attempts, 1);
    assert.ok(s.gaveUp);
    assert.equal(warnings.length, 1);
  });

  test('a drain is left like a lost link: reconnect is told why, and the move is recorded with its reason and relay', async () => {
    const causes: string[] = [];
    const b = Object.assign(new FakeLink('b'), { label: '127.0.0.1:5002' });
    const links = [b, Object.assign(new FakeLink('a again'), { label: '127.0.0.1:5001' })];
    const gaveUp: unknown[] = [];
    const { s, clock, first, lost, reconnected } = setup({
      reconnect: async (_signal, cause) => {
        causes.push(cause);
        return links.shift()!;
      },
      onGaveUp: (e) => gaveUp.push(e),
    });
    await run(clock, s, 500);
    s.lost('relay 127.0.0.1:5001 is draining', 'drain');
    assert.equal(first.closes, 1, 'the draining relay is left at once');
    await run(clock, s, 50);
    assert.deepEqual(causes, ['drain']);
    assert.equal(lost[0].reconnecting, true);
    assert.equal(s.session, b);
    assert.deepEqual(
      s.reconnects.map((r) => [r.reason, r.relay, r.attempts]),
      [['drain', '127.0.0.1:5002', 1]],
    );
    assert.equal((reconnected[0] as { reason?: string }).reason, 'drain');
    // A later loss of b is a plain one.
    b.drop();
    await run(clock, s, 50);
    assert.deepEqual(causes, ['drain', 'lost']);
    assert.deepEqual([s.reconnects[1].reason, s.reconnects[1].relay], ['lost', '127.0.0.1:5001']);
    assert.deepEqual(gaveUp, []);
    s.stop();
  });

  test('giving up is reported once, with the attempts, the time and the last error', async () => {
    const gaveUp: { attempts: number; forMs: number; lastError: string }[] = [];
    const { s, clock, first } = setup({
      reconnectForMs: 3000,
      reconnect: async () => {
        throw new NetworkError('connection refused');
      },
      onGaveUp: (e) => gaveUp.push(e),
    });
    first.drop();
    await run(clock, s, 5000, 10);
    assert.ok(s.gaveUp);
    assert.equal(gaveUp.length, 1);
    // 250 + 500 + 1000 ms of back-off between attempts, then the rest of the 3 s.
    assert.ok(gaveUp[0].attempts >= 4 && gaveUp[0].attempts <= 5, JSON.stringify(gaveUp));
    assert.ok(gaveUp[0].forMs >= 3000 && gaveUp[0].forMs < 3100, JSON.stringify(gaveUp));
    assert.match(gaveUp[0].lastError, /connection refused/);
  });

  test('without reconnect: a closed link ends the call at once, and a quiet one is not pinged', async () => {
    const { s, clock, first, lost } = setup();
    await run(clock, s, STALL_MS + PROBE_TIMEOUT_MS + 100, 50);
    assert.equal(first.pings, 0);
    first.drop();
    await settle();
    assert.ok(s.gaveUp);
    assert.deepEqual(
      lost.map((l) => l.reconnecting),
      [false],
    );
  });

  test('stop() ends a reconnection in progress without giving up, and closes a link that arrives late', async () => {
    const late = new FakeLink('late');
    let release!: () => void;
    const { s, clock, first } = setup({
      reconnect: () =>
        new Promise((resolve) => {
          release = () => resolve(late);
        }),
    });
    first.drop();
    await run(clock, s, 100);
    s.stop();
    release();
    await settle();
    assert.equal(late.closes, 1);
    assert.ok(!s.gaveUp);
    assert.equal(s.session, first);
  });
});
