/**
 * A 1:1 call's port mapping against a real miniupnpd (the portmap lab,
 * test/lab/portmap-topology.ts): the caller behind the miniupnpd router maps its call socket's
 * port for the call (PCP first), sends the `mapped` candidate to the callee as a candidate
 * update once made, and deletes the mapping when the call ends, also when it is ended with
 * Ctrl-C; the router's miniupnpd chains are empty afterwards. The relay and the callee are in
 * the wan namespace (a public host).
 */
import assert from 'node:assert/strict';
import { type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BIN } from '../helpers/cli.js';
import { describePath, labPerson, type LabCallResult, type LabPerson } from './direct-call-lab.js';
import { LAB, type LabNamespace, type PortmapLab, createPortmapLab, portmapLabSkipReason } from './portmap-topology.js';

const skip = portmapLabSkipReason();
const RELAY = `${LAB.stunPrimary}:4433`;

interface Proc {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  done: Promise<number | null>;
  when(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray>;
}

function cli(lab: PortmapLab, ns: LabNamespace, args: string[], env: NodeJS.ProcessEnv): Proc {
  // The lab's spawnIn runs `ip netns exec NS command ...` with piped stdio.
  const child = lab.spawnIn(ns, 'env', [...Object.entries(env).filter(([k]) => k.startsWith('WZP_') || k.startsWith('XDG_') || k === 'HOME' || k === 'NO_COLOR').map(([k, v]) => `${k}=${v ?? ''}`), process.execPath, BIN, ...args], {
    stdoutIsData: true,
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (err += d));
  const done = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    done,
    when: (pattern, timeoutMs) =>
      new Promise((resolve, reject) => {
        const deadline = setTimeout(() => {
          clearInterval(poll);
          reject(new Error(`no ${pattern} within ${timeoutMs} ms:\n${err}`));
        }, timeoutMs);
        const poll = setInterval(() => {
          const m = pattern.exec(err);
          if (m) {
            clearInterval(poll);
            clearTimeout(deadline);
            resolve(m);
          }
        }, 20);
      }),
  };
}

function result(p: Proc, what: string): Record<string, unknown> {
  try {
    const doc = JSON.parse(p.stdout()) as { status: number; result: Record<string, unknown> };
    assert.equal(doc.status, 0, `${what}: ${p.stdout()}\n${p.stderr()}`);
    return doc.result;
  } catch (err) {
    throw new Error(`${what}: ${String(err)}\nstdout: ${p.stdout()}\nstderr: ${p.stderr()}`);
  }
}

describe('a 1:1 call maps its port on the gateway and deletes the mapping (miniupnpd lab)', { skip, timeout: 120_000 }, () => {
  let lab: PortmapLab;
  let relay: Proc;
  let fingerprint: string;
  let ana: LabPerson;
  let bo: LabPerson;

  before(async () => {
    lab = await createPortmapLab();
    await lab.startMiniupnpd({ igdV1: false });
    ana = await labPerson('wzp-pmcall-a-');
    bo = await labPerson('wzp-pmcall-b-');
    const dir = mkdtempSync(join(tmpdir(), 'wzp-pmcall-relay-'));
    relay = cli(lab, 'wan', ['relay', '--listen', RELAY, '--config-dir', dir], process.env);
    fingerprint = (await relay.when(/listening on \S+ fingerprint (\S+)/, 20_000))[1];
  });

  after(async () => {
    relay?.child.kill('SIGKILL');
    await lab?.stopMiniupnpd().catch(() => undefined);
    await lab?.destroy();
    ana?.home.cleanup();
    bo?.home.cleanup();
  });

  it('Ctrl-C on the caller: the mapping was made, sent to the callee as a candidate update, and deleted', async () => {
    const pin = ['--relay-fingerprint', fingerprint];
    const listener = cli(lab, 'wan', ['listen', RELAY, '--accept-from', ana.fingerprint, '--once', '--tone', '700', ...pin, '--json'], bo.home.env);
    await listener.when(/registered as/, 20_000);
    const caller = cli(lab, 'client', ['call', RELAY, '--to', bo.fingerprint, '--tone', '440', '--no-playback', ...pin, '--json'], ana.home.env);
    await listener.when(/wzp listen: answered/, 20_000);
    // Long enough for the mapping (PCP answers in milliseconds here) and the update.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const during = lab.miniupnpdRules();
    caller.child.kill('SIGINT');
    const [callerCode] = await Promise.all([caller.done, listener.done]);
    assert.equal(callerCode, 0, caller.stderr());
    const c = result(caller, 'caller') as unknown as LabCallResult & { direct: { portMapping: { status: string; protocol?: string; deleted?: boolean; external?: string } } };
    const l = result(listener, 'listener') as { call: LabCallResult };

    assert.ok(during.length > 0, 'miniupnpd had the mapping during the call');
    assert.equal(c.direct.portMapping.status, 'mapped', JSON.stringify(c.direct.portMapping));
    assert.equal(c.direct.portMapping.protocol, 'pcp');
    assert.equal(c.direct.portMapping.deleted, true);
    assert.match(c.direct.portMapping.external ?? '', new RegExp(`^${LAB.routerWan.replace(/\./g, '\\.')}:\\d+$`));
    assert.deepEqual(lab.miniupnpdRules(), [], 'nothing left mapped after Ctrl-C');

    // The callee got the mapped candidate in a signed candidate update.
    const received = l.call.path.direct?.candidates.received ?? [];
    assert.ok(received.some((x) => x.type === 'mapped' && `${x.address}:${x.port}` === c.direct.portMapping.external), JSON.stringify(received));
    assert.ok((l.call.path.direct?.candidates.updatesReceived ?? 0) >= 1);
    for (const x of [c, l.call]) assert.equal(x.path.final, 'direct', describePath(x));
  });
});
