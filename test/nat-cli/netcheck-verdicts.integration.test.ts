/**
 * The false verdicts of issue 15 item 4, each against the real CLI or core on loopback:
 * an IPv6 relay, one dead STUN server, a bad --gateway, the IPv4 line that said "failed"
 * while the report had an address, "no NAT" reported as an easy NAT, and a relay name that
 * does not resolve (which also gave "cannot connect to ...: " with no reason).
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { type NetcheckEvent, runNetcheck } from '../../core/nat/netcheck.js';
import { Relay } from '../../core/relay/relay.js';
import { expectFingerprint, formatHostPort } from '../../core/transport/quic.js';
import type { NetcheckReport } from '../../src/services/netcheck.js';
import type { ReflectReport } from '../../src/services/reflect.js';
import { type CliHome, makeHome, parseJsonDocument, runCli, runCliIsolated } from '../helpers/cli.js';
import { type FakeStunServer, startFakeStunServer } from '../nat/fake-stun-server.js';
import { loadSchema, validate } from './helpers.js';

const schema = loadSchema('netcheck-report.schema.json');

async function ipv6Loopback(): Promise<boolean> {
  const probe = dgram.createSocket('udp6');
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.bind(0, '::1', () => resolve());
    });
    return true;
  } catch {
    return false;
  } finally {
    try {
      probe.close();
    } catch {
      // never bound
    }
  }
}

describe('netcheck verdicts that used to be false', () => {
  let stun: FakeStunServer;
  let silent: FakeStunServer;
  let home: CliHome;
  let tlsSeed: Uint8Array;

  before(async () => {
    stun = await startFakeStunServer();
    silent = await startFakeStunServer({ silent: true });
    home = makeHome('wzp-verdicts-');
    tlsSeed = generateIdentity().seed;
  });
  after(async () => {
    await Promise.all([stun.close(), silent.close()]);
    home.cleanup();
  });

  it('--relay [::1]:PORT: a working IPv6 relay is reached over an IPv6 socket, not "UDP blocked"', async (t) => {
    if (!(await ipv6Loopback())) {
      t.skip('no IPv6 loopback here');
      return;
    }
    const tls = await deriveTlsCertificate(tlsSeed);
    const relay = await Relay.start({ listen: { host: '::1', port: 0 }, tls, fingerprint: tls.fingerprint });
    try {
      const r = await runCli(['netcheck', '--json', '--no-port-mapping', '--relay', formatHostPort(relay.address), '--config-dir', `${home.dir}/v6`], home);
      assert.equal(r.code, 0, r.stderr);
      const report = parseJsonDocument(r).result as NetcheckReport;
      assert.deepEqual(validate(report, schema), []);
      assert.equal(report.udp.works, true, report.udp.evidence);
      assert.equal(report.relays[0].status, 'ok', report.relays[0].error?.message);
      assert.match(report.ipv6.reflexiveAddress ?? '', /^\[::1\]:\d+$/);
      assert.notEqual(report.verdict.kind, 'udp-blocked');
      assert.equal(report.verdict.kind, 'no-nat', 'the relay saw our own ::1 address');
    } finally {
      await relay.stop();
    }
  });

  it('one dead STUN server alone is "unknown" (it may be down), two silent addresses are "UDP blocked"', async () => {
    const one = await runCli(['netcheck', '--json', '--no-port-mapping', '--stun', `127.0.0.1:${silent.primary.port}`], home);
    assert.equal(one.code, 0, one.stderr);
    const report = parseJsonDocument(one).result as NetcheckReport;
    assert.equal(report.udp.works, false);
    assert.equal(report.verdict.kind, 'unknown', report.verdict.reasons.join('; '));
    assert.match(report.verdict.reasons.join(' '), /may be down/);
    const human = await runCli(['netcheck', '--no-port-mapping', '--stun', `127.0.0.1:${silent.primary.port}`], home);
    assert.doesNotMatch(human.stdout, /UDP blocked|BLOCKED/);

    const two = await runCli(['netcheck', '--json', '--no-port-mapping', '--stun', `127.0.0.1:${silent.primary.port},127.0.0.2:${silent.primary.port}`], home);
    assert.equal((parseJsonDocument(two).result as NetcheckReport).verdict.kind, 'udp-blocked');
  });

  it('--gateway notanip is a usage error (exit 2) naming the value', async () => {
    const r = await runCli(['netcheck', '--json', '--stun', `127.0.0.1:${stun.primary.port}`, '--gateway', 'notanip'], home);
    assert.equal(r.code, 2, r.stdout);
    const doc = parseJsonDocument(r);
    assert.equal(doc.status, 2);
    assert.equal(doc.name, 'UsageError');
    assert.match(String(doc.message), /notanip/);
  });

  it('the IPv4 line and the report agree: a relay that answers only over QUIC gives the address, and the line says ok', async () => {
    const tls = await deriveTlsCertificate(tlsSeed);
    // A relay without STUN (as before it answered STUN), and a STUN server that is down.
    const relay = await Relay.start({ listen: { host: '127.0.0.1', port: 0 }, tls, fingerprint: tls.fingerprint, stun: false });
    try {
      const events: NetcheckEvent[] = [];
      const label = formatHostPort(relay.address);
      const result = await runNetcheck({
        stun: [silent.primary],
        relays: [
          {
            label,
            endpoint: { address: '127.0.0.1', port: relay.address.port },
            connect: (socket, options) => RelaySession.open({ relay: relay.address, socket, verify: expectFingerprint(tls.fingerprint, label), ...options }),
          },
        ],
        portMapping: false,
        onProgress: (e) => events.push(e),
      });
      const ipv4Events = events.filter((e) => e.type === 'netcheck:check-done' && e.id === 'ipv4');
      assert.equal(ipv4Events.length, 1, 'reported once');
      assert.equal(result.ipv4.status, 'ok');
      assert.match(result.ipv4.reflexiveAddress ?? '', /^127\.0\.0\.1:\d+$/);
      assert.equal(ipv4Events[0].type === 'netcheck:check-done' && ipv4Events[0].status, 'ok', JSON.stringify(ipv4Events));
    } finally {
      await relay.stop();
    }
  });

  it('no NAT (the servers saw our own address) is said as such: not "easy NAT", not "cone NAT, or no NAT"', async () => {
    const r = await runCli(['netcheck', '--json', '--no-port-mapping', '--stun', `127.0.0.1:${stun.primary.port}`], home);
    const report = parseJsonDocument(r).result as NetcheckReport;
    assert.equal(report.verdict.kind, 'no-nat');
    assert.match(report.verdict.summary, /no NAT/);
    assert.match(report.verdict.reasons.join(' '), /firewall/);
    assert.equal(report.ipv4.natDetected, false);
    const human = await runCli(['netcheck', '--no-port-mapping', '--stun', `127.0.0.1:${stun.primary.port}`], home);
    assert.match(human.stdout, /no NAT/);
    assert.doesNotMatch(human.stdout, /easy NAT/);

    const reflected = await runCli(['reflect', '--json', '--stun', `127.0.0.1:${stun.primary.port},127.0.0.2:${stun.other.port}`], home);
    assert.equal((parseJsonDocument(reflected).result as ReflectReport).natDetected, false);
    const reflectHuman = await runCli(['reflect', '--stun', `127.0.0.1:${stun.primary.port},127.0.0.2:${stun.other.port}`], home);
    assert.equal(reflectHuman.code, 0, reflectHuman.stderr);
    assert.match(reflectHuman.stdout, /NAT +none/);
    assert.doesNotMatch(reflectHuman.stdout, /cone NAT, or no NAT/);
  });

  it('a relay name that does not resolve: the reason is said, and it is not "UDP blocked"', async () => {
    // In a namespace of its own: the lookup must not leave the machine.
    const r = await runCliIsolated(['netcheck', '--json', '--no-port-mapping', '--relay', 'relay.does-not-exist.invalid:4433'], home);
    assert.equal(r.code, 0, r.stderr);
    const doc = parseJsonDocument(r);
    const report = doc.result as NetcheckReport;
    assert.equal(report.relays[0].status, 'failed');
    assert.match(report.relays[0].error?.message ?? '', /cannot resolve relay\.does-not-exist\.invalid: \S+/);
    assert.notEqual(report.verdict.kind, 'udp-blocked');
    assert.ok((doc.warnings as string[]).some((w) => w.includes('relay.does-not-exist.invalid')));
    // Where a name reaches the QUIC library itself (calls, echo-test): test/cli/bad-input.integration.test.ts.
  });
});
