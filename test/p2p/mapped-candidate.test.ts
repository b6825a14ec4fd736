import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { PortMapper } from '../../core/nat/portmap.js';
import { candidatePriority, createMappedCandidate } from '../../core/p2p/candidates.js';
import { FakeUdpGateway, hex } from '../portmap/helpers.js';

const CHILD = fileURLToPath(new URL('./mapped-sigint-child.js', import.meta.url));

/** A PCP server's MAP answer: echoes the request's MAP data, external EXTERNAL:(internal + 1000). */
function pcpAnswer(request: Uint8Array, external = '00000000000000000000ffffcb007107'): Uint8Array {
  const answer = new Uint8Array(60);
  answer.set(request.subarray(24, 60), 24);
  answer.set([2, 0x81, 0, 0]);
  answer.set(request.subarray(4, 8), 4);
  const internal = (request[40] << 8) | request[41];
  answer.set([(internal + 1000) >> 8, (internal + 1000) & 0xff], 42);
  answer.set(hex(external), 44);
  return answer;
}
const lifetimeOf = (request: Uint8Array): number => new DataView(request.buffer, request.byteOffset).getUint32(4);

describe('mapped candidate (PCP on a fake loopback gateway)', () => {
  let gateway: FakeUdpGateway;
  const mapper = () => new PortMapper({ gateway: '127.0.0.1', serverPort: gateway.port, preference: ['pcp'], schedule: { initialMs: 200, maxAttempts: 3 } });
  const lifetimes = () => gateway.received.map((datagram) => lifetimeOf(datagram.bytes));

  before(async () => {
    gateway = await FakeUdpGateway.start();
  });
  beforeEach(() => {
    gateway.received.length = 0;
    gateway.answer = (request) => pcpAnswer(request);
  });
  after(async () => {
    await gateway.close();
  });

  it('maps the shared socket port, renews it while held, and release() deletes it once however often it is called', async () => {
    const handle = await createMappedCandidate(mapper(), { port: 5000, lifetimeS: 1 });
    assert.deepEqual(handle.candidate, { type: 'mapped', address: '203.0.113.7', port: 6000, family: 'IPv4', priority: candidatePriority('mapped', 'IPv4') });
    assert.equal(handle.released, false);
    await new Promise((resolve) => setTimeout(resolve, 1_200)); // renewals at half the 1 s lifetime
    const renewals = lifetimes().length - 1;
    assert.ok(renewals >= 1, `renewed ${renewals} times`);
    const first = handle.release();
    const second = handle.release();
    assert.equal(handle.released, true);
    assert.deepEqual(await first, { deleted: true });
    assert.deepEqual(await second, { deleted: true });
    assert.deepEqual(await handle.release(), { deleted: true });
    assert.deepEqual(lifetimes().filter((lifetime) => lifetime === 0).length, 1, `one delete: ${lifetimes().join()}`);
    assert.equal(lifetimes().at(-1), 0);
  });

  it('a gateway that does not answer the delete: release() resolves with the error (the mapping expires by itself)', async () => {
    const handle = await createMappedCandidate(mapper(), { port: 5000, lifetimeS: 60 });
    gateway.answer = () => undefined;
    const outcome = await handle.release();
    assert.equal(outcome.deleted, false);
    assert.ok(!outcome.deleted && outcome.error.length > 0);
    assert.equal(lifetimes().filter((lifetime) => lifetime === 0).length, 3, 'the delete was retransmitted');
  });

  it('an unusable external address (a private one behind a second NAT) is refused and the mapping deleted at once', async () => {
    gateway.answer = (request) => pcpAnswer(request, '00000000000000000000ffff0a000001');
    await assert.rejects(createMappedCandidate(mapper(), { port: 5000, lifetimeS: 60 }), { name: 'UsageError' });
    assert.deepEqual(lifetimes(), [60, 0]);
  });

  it('Ctrl-C: a process that hooked release() to SIGINT deletes its mapping before exiting', async () => {
    const child = spawn(process.execPath, [CHILD, String(gateway.port)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const first = JSON.parse(((await lines.next()).value as string) ?? 'null');
      assert.deepEqual(first.candidate.address, '203.0.113.7');
      assert.deepEqual(lifetimes(), [60]);
      child.kill('SIGINT');
      const second = JSON.parse(((await lines.next()).value as string) ?? 'null');
      assert.deepEqual(second, { signal: 'SIGINT', outcome: { deleted: true } });
      assert.equal(await exited, 130);
      assert.deepEqual(lifetimes(), [60, 0]);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
