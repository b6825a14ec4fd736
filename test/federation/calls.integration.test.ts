/**
 * Cross-relay 1:1 calls (docs/federation.md, "Cross-relay calls"), with separate relay
 * processes on loopback and every party a real CLI process: a caller on relay A calls a
 * callee listening on relay B of an A-B federation; with --relay-only on both sides the media
 * goes through A and B (the call's room carried over their link), without it the call goes
 * direct (on loopback, both sockets are on this machine). A callee two hops away (A-B-C) is
 * found and the call is relayed through all three; an unknown fingerprint is offline
 * (exit 11), as on one relay.
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { generateIdentity, saveIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { decodeWav } from '../../core/media/wav.js';
import { makeHome, parseJsonDocument, runCli, spawnCli, startRelayProcess, type CliHome, type CliResult, type RunningRelay } from '../helpers/cli.js';
import { toneLevel } from '../helpers/tone-level.js';
import { sleep, waitFor } from '../helpers/wait.js';

type Doc = { status: number; name?: string; message?: string; result?: any };
const doc = (r: CliResult): Doc => parseJsonDocument(r) as Doc;

async function freePort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Until `cond` holds (polled every 100 ms), at most `ms`. */
async function until(cond: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`not reached in ${ms} ms: ${cond.toString()}`);
    await sleep(100);
  }
}

function count(text: string, pattern: RegExp): number {
  return [...text.matchAll(new RegExp(pattern.source, 'g'))].length;
}

describe('1:1 calls across federated relay processes', () => {
  const homes: CliHome[] = [];
  const running: RunningRelay[] = [];
  after(async () => {
    await Promise.all(running.map((r) => r.stop('SIGKILL')));
    for (const h of homes) h.cleanup();
  });

  /** Relays in a chain 0 - 1 - ... - n-1 (each dials the next), once every link is up. */
  async function chain(n: number): Promise<RunningRelay[]> {
    const home = makeHome('wzp-fedcall-');
    homes.push(home);
    const ids: { path: string; fingerprint: string; port: number }[] = [];
    for (let i = 0; i < n; i++) {
      const identity = generateIdentity();
      const path = join(home.dir, `relay-${i}.json`);
      await saveIdentity(path, identity);
      ids.push({ path, fingerprint: (await deriveTlsCertificate(identity.seed)).fingerprint, port: await freePort() });
    }
    const relays = await Promise.all(
      ids.map((id, i) => {
        const args = ['--listen', `127.0.0.1:${id.port}`, '--identity', id.path, '--metrics', '127.0.0.1:0'];
        if (i + 1 < n) args.push('--peer', `127.0.0.1:${ids[i + 1].port}=${ids[i + 1].fingerprint}`);
        if (i > 0) args.push('--trusted', ids[i - 1].fingerprint);
        return startRelayProcess(args, home);
      }),
    );
    running.push(...relays);
    await waitFor(() => relays.every((r, i) => count(r.stderr(), /federation:link-up/) >= (i === 0 || i === n - 1 ? 1 : 2)), 20_000);
    return relays;
  }

  /** A relay's metrics as `series{labels}` -> value. */
  async function scrape(relay: RunningRelay): Promise<Map<string, number>> {
    const url = /wzp relay metrics on (http:\/\/\S+\/metrics) /.exec(relay.stderr());
    assert.ok(url, relay.stderr());
    const text = await (await fetch(url[1])).text();
    const out = new Map<string, number>();
    for (const line of text.split('\n')) {
      const m = /^(wzp_relay_federation_\S+) (\S+)$/.exec(line);
      if (m) out.set(m[1].replace(/,?peer="[^"]*"/, '').replace('{,', '{'), (out.get(m[1]) ?? 0) + Number(m[2]));
    }
    return out;
  }

  /** Drops counted on a relay's links, by reason, summed over its peers (only those not 0). */
  function drops(metrics: Map<string, number>): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of metrics) {
      const m = /^wzp_relay_federation_drops_total\{.*reason="([^"]+)"/.exec(k);
      if (m && v > 0) out[m[1]] = (out[m[1]] ?? 0) + v;
    }
    return out;
  }

  async function person(): Promise<{ home: CliHome; fp: string }> {
    const home = makeHome('wzp-fedcall-p-');
    homes.push(home);
    const r = await runCli(['identity', '--json'], home);
    assert.equal(r.code, 0, r.stderr);
    return { home, fp: (doc(r).result as { fingerprint: string }).fingerprint };
  }

  /** Bo listens on `calleeRelay`, Ana calls from `callerRelay`; both hear the other's tone. */
  async function call(callerRelay: RunningRelay, calleeRelay: RunningRelay, extra: string[]): Promise<{ c: any; l: any }> {
    const [ana, bo] = [await person(), await person()];
    const boWav = join(bo.home.dir, 'heard.wav');
    const anaWav = join(ana.home.dir, 'heard.wav');
    const listener = spawnCli(
      ['listen', calleeRelay.address, '--accept-from', ana.fp, '--tone', '700', '--once', '--record', boWav, '--relay-fingerprint', calleeRelay.fingerprint, '--json', ...extra],
      bo.home,
    );
    await listener.when(/wzp listen: registered as/);
    const caller = await runCli(
      ['call', callerRelay.address, '--to', bo.fp, '--tone', '440', '--duration', '4', '--record', anaWav, '--no-playback', '--relay-fingerprint', callerRelay.fingerprint, '--json', ...extra],
      ana.home,
    );
    assert.equal(caller.code, 0, caller.stderr);
    const l = await listener.done;
    assert.equal(l.code, 0, l.stderr);
    const c = doc(caller).result;
    const ld = doc(l).result;
    assert.equal(c.direct.peer, bo.fp);
    assert.equal(ld.calls[0].caller, ana.fp);
    assert.equal(ld.calls[0].outcome, 'answered');
    assert.equal(ld.call.direct.callId, c.direct.callId);
    assert.ok(Object.values(c.direct.signalsDropped).every((n) => n === 0), JSON.stringify(c.direct.signalsDropped));
    for (const r of [c, ld.call]) {
      assert.equal(r.participants.length, 1);
      assert.equal(r.participants[0].decryptRejected, 0);
    }
    for (const [wav, hears, own] of [[anaWav, 700, 440], [boWav, 440, 700]] as const) {
      const heard = decodeWav(readFileSync(wav)).samples;
      const level = toneLevel(heard, hears);
      assert.ok(level > 1000, `${wav}: ${hears} Hz at ${level.toFixed(0)}`);
      assert.ok(level > 20 * toneLevel(heard, own), `${wav}: own tone ${toneLevel(heard, own).toFixed(0)}`);
    }
    return { c, l: ld };
  }

  test('A-B: a caller on A reaches a callee listening on B; relayed through A and B with --relay-only, direct without', async () => {
    const [a, b] = await chain(2);
    const relayed = await call(a, b, ['--relay-only']);
    assert.equal(relayed.c.path.final, 'relay', JSON.stringify(relayed.c.path));
    assert.equal(relayed.c.direct.relayCandidate, undefined, 'relay-only: no address passed on, across relays too');
    assert.ok(relayed.c.firstAudioMs !== undefined && relayed.c.firstAudioMs < 3000, `first audio ${relayed.c.firstAudioMs} ms`);

    const direct = await call(a, b, []);
    // Cross-wired across the relays: the caller got the address relay B saw of the callee.
    assert.equal(direct.c.direct.relayCandidate?.address, '127.0.0.1');
    assert.equal(direct.c.path.final, 'direct', JSON.stringify(direct.c.path.timeline));

    // The offline answer, as on one relay (the query finds nobody in the federation).
    const ana = await person();
    const r = await runCli(['call', a.address, '--to', generateIdentity().fingerprint, '--relay-fingerprint', a.fingerprint, '--json'], ana.home);
    assert.equal(r.code, 11, r.stderr);
    assert.equal(doc(r).name, 'CalleeOfflineError');

    // Counted; the calls' state and rooms are gone with the calls; nothing was dropped.
    const ma = await scrape(a);
    assert.equal(ma.get('wzp_relay_federation_call_lookups_total{result="found"}'), 2);
    assert.equal(ma.get('wzp_relay_federation_call_lookups_total{result="not-found"}'), 1);
    await until(async () => (await scrape(a)).get('wzp_relay_federation_calls{where="end"}') === 0 && (await scrape(b)).get('wzp_relay_federation_calls{where="end"}') === 0, 5000);
    assert.deepEqual(drops(await scrape(b)), {});
    assert.deepEqual(drops(ma), {});
  });

  test('A-B-C: a callee two hops away is found, and the relayed call goes through all three relays', async () => {
    const [a, b, c] = await chain(3);
    const relayed = await call(a, c, ['--relay-only']);
    assert.equal(relayed.c.path.final, 'relay', JSON.stringify(relayed.c.path));
    // And the other way round, callee on A.
    const back = await call(c, a, ['--relay-only']);
    assert.equal(back.c.path.final, 'relay');
    // The middle relay routed both calls and keeps nothing of them; nothing dropped on the way.
    await until(async () => (await scrape(b)).get('wzp_relay_federation_calls{where="transit"}') === 0, 5000);
    for (const r of [a, b, c]) assert.deepEqual(drops(await scrape(r)), {});
  });
});
