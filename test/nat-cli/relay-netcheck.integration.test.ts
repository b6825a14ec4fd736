/**
 * Zero-config netcheck with your own relay: `wzp relay` processes on loopback (one started
 * with --stun-alternate 127.0.0.2, one plain) and `wzp netcheck --relay`, `wzp reflect`,
 * `wzp predict-ports --relay` with no STUN server at all. No NAT here, so the answers are
 * known exactly.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { NetcheckReport } from '../../src/services/netcheck.js';
import type { PredictPortsReport } from '../../src/services/predict-ports.js';
import type { ReflectReport } from '../../src/services/reflect.js';
import { type CliHome, type RunningRelay, makeHome, parseJsonDocument, runCli, startRelayProcess } from '../helpers/cli.js';
import { loadSchema, validate } from './helpers.js';

describe('netcheck, reflect and predict-ports against a wzp relay alone', () => {
  let home: CliHome;
  let relayHome: CliHome;
  let rfc5780: RunningRelay;
  let plain: RunningRelay;

  before(async () => {
    home = makeHome('wzp-relay-netcheck-');
    relayHome = makeHome('wzp-relay-netcheck-relay-');
    [rfc5780, plain] = await Promise.all([
      startRelayProcess(['--listen', '127.0.0.1:0', '--stun-alternate', '127.0.0.2'], relayHome),
      startRelayProcess(['--listen', '127.0.0.1:0', '--config-dir', `${relayHome.dir}/plain`], relayHome),
    ]);
  });
  after(async () => {
    await Promise.all([rfc5780?.stop('SIGKILL'), plain?.stop('SIGKILL')]);
    home.cleanup();
    relayHome.cleanup();
  });

  it('wzp netcheck --relay 127.0.0.1:PORT --json (an RFC 5780 relay): reflexive address, mapping, filtering, allocation', async () => {
    const r = await runCli(['netcheck', '--json', '--no-port-mapping', '--relay', rfc5780.address], home);
    assert.equal(r.code, 0, r.stderr);
    const report = parseJsonDocument(r).result as NetcheckReport;
    assert.deepEqual(validate(report, loadSchema('netcheck-report.schema.json')), []);
    assert.match(report.ipv4.reflexiveAddress ?? '', /^127\.0\.0\.1:\d+$/);
    assert.equal(report.ipv4.servers[0].relay, rfc5780.address, "the relay's own STUN");
    assert.equal(report.ipv4.servers[0].otherAddress, `127.0.0.2:${Number(rfc5780.address.split(':')[1]) + 1}`);
    assert.equal(report.behaviour.status, 'ok', report.behaviour.reason ?? report.behaviour.error?.message);
    assert.equal(report.behaviour.mapping, 'endpoint-independent');
    assert.equal(report.behaviour.filtering, 'endpoint-independent');
    assert.equal(report.behaviour.natDetected, false);
    assert.equal(report.allocation.kind, 'port-preserving', report.allocation.explanation);
    assert.equal(report.allocation.observations.length, 4, "the relay's four STUN addresses");
    assert.equal(report.relays[0].status, 'ok');
    assert.equal(report.verdict.kind, 'no-nat');
  });

  it('a relay with one address (no NAT between): the reflexive address, mapping endpoint-independent, filtering unmeasured saying what would measure it', async () => {
    const r = await runCli(['netcheck', '--json', '--no-port-mapping', '--relay', plain.address], home);
    assert.equal(r.code, 0, r.stderr);
    const report = parseJsonDocument(r).result as NetcheckReport;
    assert.match(report.ipv4.reflexiveAddress ?? '', /^127\.0\.0\.1:\d+$/);
    assert.equal(report.ipv4.servers[0].answered, true, 'the plain relay answered STUN');
    assert.equal(report.behaviour.status, 'ok', 'no translation: the mapping is known without RFC 5780');
    assert.equal(report.behaviour.mapping, 'endpoint-independent');
    assert.equal(report.behaviour.natDetected, false);
    assert.equal(report.behaviour.filtering, 'unknown');
    assert.match(report.behaviour.reason ?? '', /--stun-alternate/);
    assert.equal(report.ipv4.acrossServers?.mapping, 'unknown', "two answers from one relay address compare nothing");
    assert.equal(report.verdict.kind, 'no-nat', 'the reflexive address is our own');
  });

  it('wzp reflect RELAY (RFC 5780): the relay and its other address, compared', async () => {
    const r = await runCli(['reflect', rfc5780.address, '--json'], home);
    assert.equal(r.code, 0, r.stderr);
    const report = parseJsonDocument(r).result as ReflectReport;
    assert.deepEqual(
      report.observations.map((o) => [o.via, o.alternateOf]),
      [
        ['quic', undefined],
        ['stun', rfc5780.address],
      ],
    );
    assert.equal(report.mapping, 'endpoint-independent', report.reason);
    assert.equal(report.natDetected, false);
  });

  it('wzp predict-ports --relay RELAY: the four RFC 5780 endpoints of the relay', async () => {
    const r = await runCli(['predict-ports', '--json', '--relay', rfc5780.address], home);
    assert.equal(r.code, 0, r.stderr);
    const report = parseJsonDocument(r).result as PredictPortsReport;
    assert.equal(report.observations.length, 4);
    assert.equal(report.kind, 'port-preserving');
    assert.deepEqual(report.servers, [rfc5780.address]);
  });
});
