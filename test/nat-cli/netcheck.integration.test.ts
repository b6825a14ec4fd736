/**
 * netcheck, reflect and predict-ports on loopback: a fake RFC 5780 STUN server on 127.0.0.1 and
 * 127.0.0.2 (test/nat/fake-stun-server.ts) and an in-process relay. No NAT here, so the
 * answers are known exactly; port mapping is off (it would ask the host's real gateway).
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RelaySession } from '../../core/client/relay-session.js';
import { generateIdentity } from '../../core/crypto/identity.js';
import { deriveTlsCertificate } from '../../core/crypto/tls-cert.js';
import { type NetcheckEvent, type NetcheckRelay, runNetcheck, walkPortAllocation } from '../../core/nat/netcheck.js';
import stunPackage from 'stun';
import { StunAttribute, StunClient } from '../../core/nat/stun.js';
import { closeUdpSocket, openUdpSocket } from '../../core/nat/udp.js';
import { Relay } from '../../core/relay/relay.js';
import { expectFingerprint, formatHostPort, parseHostPort } from '../../core/transport/quic.js';
import type { NetcheckReport } from '../../src/services/netcheck.js';
import type { PredictPortsReport } from '../../src/services/predict-ports.js';
import type { ReflectReport } from '../../src/services/reflect.js';
import { type CliHome, makeHome, parseJsonDocument, runCli } from '../helpers/cli.js';
import { type FakeStunServer, startFakeStunServer } from '../nat/fake-stun-server.js';
import { loadSchema, validate } from './helpers.js';

describe('netcheck on loopback', () => {
  let stun: FakeStunServer;
  let silent: FakeStunServer;
  let relay: Relay;
  let fingerprint: string;
  let home: CliHome;

  before(async () => {
    stun = await startFakeStunServer();
    silent = await startFakeStunServer({ silent: true });
    const tls = await deriveTlsCertificate(generateIdentity().seed);
    fingerprint = tls.fingerprint;
    relay = await Relay.start({ listen: { host: '127.0.0.1', port: 0 }, tls, fingerprint: tls.fingerprint });
    home = makeHome('wzp-netcheck-');
  });

  after(async () => {
    await Promise.all([stun.close(), silent.close(), relay.stop()]);
    home.cleanup();
  });

  const relayAt = (label: string): NetcheckRelay => ({
    label,
    endpoint: { address: parseHostPort(label).host, port: parseHostPort(label).port },
    connect: (socket, options) => RelaySession.open({ relay: parseHostPort(label), socket, verify: expectFingerprint(fingerprint, label), ...options }),
  });

  it('runs every check and reports progress for each planned one', async () => {
    const events: NetcheckEvent[] = [];
    const label = formatHostPort(relay.address);
    const result = await runNetcheck({ stun: [stun.primary], relays: [relayAt(label)], portMapping: false, onProgress: (e) => events.push(e) });
    assert.equal(result.udp.works, true);
    assert.equal(result.ipv4.status, 'ok');
    assert.equal(result.ipv4.servers[0].otherAddress, `${stun.other.address}:${stun.other.port}`);
    assert.equal(result.behaviour.natDetected, false);
    assert.equal(result.behaviour.mapping, 'endpoint-independent');
    assert.equal(result.allocation.kind, 'port-preserving');
    assert.deepEqual(
      result.allocation.observations.map((o) => o.server),
      [`127.0.0.1:${stun.primary.port}`, `127.0.0.1:${stun.other.port}`, `127.0.0.2:${stun.primary.port}`, `127.0.0.2:${stun.other.port}`],
      'the RFC 5780 server contributed its four endpoints, in order',
    );
    assert.equal(result.relays[0].status, 'ok');
    assert.equal(result.relays[0].pingsMs.length, 3);
    assert.equal(result.relays[0].fingerprint, fingerprint);
    assert.equal(result.ipv4.acrossServers?.mapping, 'endpoint-independent', 'STUN and the relay saw the same address of the main socket');
    assert.deepEqual(result.preferredRelay, { relay: label, medianMs: result.relays[0].medianMs });
    assert.equal(result.portMapping.status, 'skipped');
    assert.equal(result.verdict.kind, 'no-nat', 'loopback: the servers see our own address');
    assert.equal(result.ipv4.natDetected, false);
    assert.equal(result.ipv4.servers.length, 2, 'the STUN server, and the relay as a STUN server');
    assert.equal(result.ipv4.servers[1].relay, label);
    assert.equal(result.ipv4.servers[1].answered, true);

    const planned = events[0];
    assert.equal(planned.type, 'netcheck:planned');
    const done = events.filter((e) => e.type === 'netcheck:check-done').map((e) => e.id);
    assert.deepEqual(new Set(done), new Set(planned.checks.map((c) => c.id)), 'every planned check reported once');
    assert.equal(done.length, planned.checks.length);
  });

  it('nothing answers: UDP blocked within the first-contact box, and the deadline stops a dead relay', async () => {
    const started = performance.now();
    const dead = relayAt('127.0.0.2:9');
    const result = await runNetcheck({ stun: [silent.primary], relays: [dead], portMapping: false, deadlineMs: 1_200 });
    const elapsed = performance.now() - started;
    assert.equal(result.udp.works, false);
    assert.equal(result.ipv4.status, 'failed');
    assert.equal(result.behaviour.status, 'skipped');
    assert.equal(result.allocation.status, 'skipped');
    assert.equal(result.relays[0].status, 'failed');
    assert.equal(result.verdict.kind, 'udp-blocked');
    assert.ok(elapsed < 2_000, `bounded by the deadline: ${elapsed} ms`);
  });

  it('the user stopping it: a report of what was measured, marked interrupted; before it starts: an AbortError', async () => {
    const controller = new AbortController();
    const pending = runNetcheck({ stun: [stun.primary, silent.primary], relays: [], portMapping: false, signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    const result = await pending;
    assert.equal(result.interrupted, true);
    assert.equal(result.ipv4.servers[0].answered, true, 'the answer received before Ctrl-C is kept');
    assert.equal(result.ipv4.servers[1].error?.name, 'AbortError');
    assert.ok(result.verdict.reasons.some((r) => /interrupted/.test(r)), result.verdict.reasons.join('; '));
    assert.equal(result.allocation.status, 'skipped');
    await assert.rejects(runNetcheck({ stun: [stun.primary], relays: [], portMapping: false, signal: AbortSignal.abort() }), { name: 'AbortError' });
  });

  it('an IPv6 STUN server gives the IPv6 address, from its own socket', async (t) => {
    const v6 = dgram.createSocket('udp6');
    try {
      await new Promise<void>((resolve, reject) => {
        v6.once('error', reject);
        v6.bind(0, '::1', () => resolve());
      });
    } catch (err) {
      t.skip(`no IPv6 loopback here: ${(err as Error).message}`);
      return;
    }
    v6.on('message', (packet, rinfo) => {
      const answer = stunPackage.createMessage(0x0101, stunPackage.decode(packet).transactionId);
      answer.addAttribute(StunAttribute.XOR_MAPPED_ADDRESS, rinfo.address, rinfo.port);
      v6.send(answer.toBuffer(), rinfo.port, rinfo.address);
    });
    try {
      const result = await runNetcheck({ stun: [stun.primary, { address: '::1', port: v6.address().port }], relays: [], portMapping: false });
      assert.equal(result.ipv6.status, 'ok');
      assert.match(result.ipv6.reflexiveAddress ?? '', /^\[::1\]:\d+$/);
      assert.equal(result.ipv6.servers[0].server, `[::1]:${v6.address().port}`);
      assert.equal(result.ipv4.status, 'ok', 'IPv4 ran alongside');
    } finally {
      v6.close();
    }
  });

  it('walkPortAllocation probes distinct endpoints once, in order, bounded', async () => {
    const socket = await openUdpSocket('udp4', '127.0.0.1');
    const client = new StunClient(socket);
    try {
      const walk = await walkPortAllocation(client, socket.address().port, [stun.primary, stun.primary, { address: '127.0.0.2', port: stun.other.port }], {
        count: 2,
        maxEndpoints: 3,
        probeTimeoutMs: 500,
      });
      assert.equal(walk.observations.length, 3, 'duplicates skipped, then bounded at 3');
      assert.equal(walk.kind, 'port-preserving');
      assert.deepEqual(walk.prediction.ports, [socket.address().port]);
    } finally {
      client.close();
      await closeUdpSocket(socket);
    }
  });

  it('wzp netcheck --json: a report that matches its schema, pins the relay on first use', async () => {
    const r = await runCli(['netcheck', '--json', '--no-port-mapping', '--stun', `127.0.0.1:${stun.primary.port}`, '--relay', formatHostPort(relay.address)], home);
    assert.equal(r.code, 0, r.stderr);
    const report = parseJsonDocument(r).result as NetcheckReport;
    assert.deepEqual(validate(report, loadSchema('netcheck-report.schema.json')), []);
    assert.equal(report.meta.schemaVersion, 2);
    assert.deepEqual(report.meta.flags.stun, [`127.0.0.1:${stun.primary.port}`]);
    assert.deepEqual(report.meta.flags.relay, [formatHostPort(relay.address)]);
    assert.equal(report.meta.flags['port-mapping'], false);
    assert.equal(report.servers.source.stun, 'flags');
    const pins = JSON.parse(readFileSync(join(home.env.WZP_CONFIG_DIR as string, 'known-relays.json'), 'utf8')) as { relays: Record<string, { fingerprint: string }> };
    assert.equal(pins.relays[formatHostPort(relay.address)].fingerprint, fingerprint);
  });

  it('wzp netcheck --binding-lifetime: the opt-in idle-mapping measurement is reported', async () => {
    const r = await runCli(
      ['netcheck', '--json', '--no-port-mapping', '--stun', `127.0.0.1:${stun.primary.port}`, '--binding-lifetime', '2'],
      home,
    );
    assert.equal(r.code, 0, r.stderr);
    const report = parseJsonDocument(r).result as NetcheckReport;
    assert.deepEqual(validate(report, loadSchema('netcheck-report.schema.json')), []);
    const lifetime = report.behaviour.bindingLifetime;
    assert.ok(lifetime, JSON.stringify(report.behaviour));
    if (lifetime.measurable) {
      // No NAT on loopback: the mapping outlives every idle time tried.
      assert.equal(lifetime.expiredWithinMs, undefined);
      assert.ok(lifetime.aliveForAtLeastMs >= 1000, `alive for ${lifetime.aliveForAtLeastMs} ms`);
    } else {
      assert.ok(lifetime.notes.length > 0, 'an unmeasurable lifetime says why');
    }
  });

  it('wzp netcheck reads netcheck.json; a broken one is a config error; none is a usage error', async () => {
    const configDir = join(home.dir, 'nc-config');
    mkdirSync(configDir, { recursive: true });
    const none = await runCli(['netcheck', '--json', '--config-dir', configDir], home);
    assert.equal(none.code, 2);
    assert.equal(parseJsonDocument(none).name, 'UsageError');

    writeFileSync(join(configDir, 'netcheck.json'), JSON.stringify({ stun: [`127.0.0.1:${stun.primary.port}`], relays: [{ address: formatHostPort(relay.address), fingerprint }] }));
    const ok = await runCli(['netcheck', '--json', '--no-port-mapping', '--config-dir', configDir], home);
    assert.equal(ok.code, 0, ok.stderr);
    const report = parseJsonDocument(ok).result as NetcheckReport;
    assert.deepEqual(report.servers.source, { stun: 'config', relays: 'config' });
    assert.deepEqual(report.servers.relays, [{ address: formatHostPort(relay.address), pinned: true }]);
    assert.equal(report.relays[0].status, 'ok');

    writeFileSync(join(configDir, 'netcheck.json'), '{"stun": "nope"}');
    const broken = await runCli(['netcheck', '--json', '--config-dir', configDir], home);
    assert.equal(broken.code, 3);
    assert.equal(parseJsonDocument(broken).name, 'ConfigError');
  });

  it('wzp reflect RELAY --stun SERVER: one socket, both observations, the first answer on top', async () => {
    const r = await runCli(['reflect', formatHostPort(relay.address), '--stun', `127.0.0.2:${stun.primary.port}`, '--json'], home);
    assert.equal(r.code, 0, r.stderr);
    const report = parseJsonDocument(r).result as ReflectReport;
    assert.deepEqual(report.observations.map((o) => o.via), ['quic', 'stun']);
    assert.equal(report.mapping, 'endpoint-independent');
    assert.equal(report.observedAddress, report.observations[0].observedAddress);
    assert.equal(report.observations[1].observedAddress, report.observedAddress, 'STUN saw the same socket');
    assert.equal(report.localAddress, report.observedAddress, 'no NAT on loopback');
    assert.equal(report.fingerprint, fingerprint);
  });

  it('wzp predict-ports: the four RFC 5780 endpoints from one socket', async () => {
    const r = await runCli(['predict-ports', '--json', '--stun', `127.0.0.1:${stun.primary.port}`, '--count', '5'], home);
    assert.equal(r.code, 0, r.stderr);
    const report = parseJsonDocument(r).result as PredictPortsReport;
    assert.equal(report.kind, 'port-preserving');
    assert.equal(report.observations.length, 4);
    assert.deepEqual(report.prediction, { ports: [report.localPort], confidence: 1 });
  });
});
