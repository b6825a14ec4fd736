import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NatTraversalError } from '../../core/errors.js';
import {
  PortMapError,
  exchangeUdp,
  localAddressToward,
  parseDefaultGateway,
  resolveGateway,
  scheduleTotalMs,
} from '../../core/nat/gateway.js';
import { assertRejectsNamed, closedUdpPort } from './helpers.js';

const HEADER = 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT';

describe('parseDefaultGateway (/proc/net/route)', () => {
  it('reads the default route gateway (little-endian hex)', () => {
    const table = [
      HEADER,
      'eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0',
      'eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
    ].join('\n');
    assert.equal(parseDefaultGateway(table), '192.0.2.1');
  });

  it('picks the default route with the lowest metric', () => {
    const table = [
      HEADER,
      'wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0',
      'eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0',
    ].join('\n');
    assert.equal(parseDefaultGateway(table), '10.0.0.1');
  });

  it('skips default routes that are down or have no gateway flag, and junk lines', () => {
    const table = [
      HEADER,
      'eth0\t00000000\t010200C0\t0002\t0\t0\t0\t00000000\t0\t0\t0', // not RTF_UP
      'tun0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0', // no RTF_GATEWAY
      'garbage',
      'eth1\t00000000\tZZZZZZZZ\t0003\t0\t0\t0\t00000000\t0\t0\t0',
    ].join('\n');
    assert.equal(parseDefaultGateway(table), undefined);
  });

  it('finds nothing in an empty table', () => {
    assert.equal(parseDefaultGateway(`${HEADER}\n`), undefined);
  });
});

describe('resolveGateway', () => {
  it('returns an explicit IPv4 gateway as is', async () => {
    assert.equal(await resolveGateway('198.51.100.1'), '198.51.100.1');
  });

  it('rejects an explicit gateway that is not IPv4 with UsageError', async () => {
    await assertRejectsNamed(resolveGateway('router.local'), 'UsageError');
  });

  it('reads the default route otherwise (or says there is none)', async () => {
    try {
      assert.match(await resolveGateway(), /^\d+\.\d+\.\d+\.\d+$/);
    } catch (error) {
      assert.equal((error as Error).name, 'NetworkError');
    }
  });
});

describe('localAddressToward', () => {
  it('picks the loopback address for a loopback peer', async () => {
    assert.equal(await localAddressToward('127.0.0.1'), '127.0.0.1');
  });
});

describe('exchangeUdp', () => {
  it('reports a closed port (ICMP port unreachable) as a refusal, without waiting out the schedule', async () => {
    const port = await closedUdpPort();
    const start = performance.now();
    const error = await assertRejectsNamed(
      exchangeUdp({
        label: 'PCP',
        gateway: '127.0.0.1',
        port,
        request: new Uint8Array(4),
        accept: () => undefined,
        schedule: { initialMs: 500, maxAttempts: 4 },
      }),
      'NetworkError',
    );
    assert.match(error.message, /refused/);
    assert.ok(performance.now() - start < 500, 'failed before the first retransmission');
  });

  it('rejects at once if the signal is already aborted', async () => {
    await assertRejectsNamed(
      exchangeUdp({
        label: 'PCP',
        gateway: '127.0.0.1',
        port: 9,
        request: new Uint8Array(4),
        accept: () => undefined,
        schedule: { initialMs: 50, maxAttempts: 1 },
        signal: AbortSignal.abort(),
      }),
      'AbortError',
    );
  });

  it('sums the schedule: 250 ms doubling over 4 sends waits 3750 ms', () => {
    assert.equal(scheduleTotalMs({ initialMs: 250, maxAttempts: 4 }), 3750);
  });
});

describe('PortMapError', () => {
  it('is a NatTraversalError with a stable name, reason, code and suggestions', () => {
    const error = new PortMapError('pcp', 'not-authorized', 'refused', { resultCode: 2 });
    assert.ok(error instanceof NatTraversalError);
    assert.equal(error.name, 'PortMapError');
    assert.equal(error.code, 7);
    assert.equal(error.reason, 'not-authorized');
    assert.equal(error.resultCode, 2);
    assert.ok(error.suggestions.length > 0);
  });
});
