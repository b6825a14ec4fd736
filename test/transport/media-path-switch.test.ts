import { test } from 'node:test';
import assert from 'node:assert/strict';
import { emptyMediaTransportStats, MediaPathSwitch, type MediaTransport, type MediaTransportState } from '../../core/transport/media-transport.js';

/** A path whose state a test sets; it records what is sent and delivers what the test injects. */
class TestPath implements MediaTransport {
  readonly sent: number[] = [];
  state: MediaTransportState = 'connecting';
  #handler: (d: Uint8Array) => void = () => undefined;
  closed = false;
  constructor(
    readonly kind: MediaTransport['kind'],
    readonly label: string,
  ) {}
  maxPayload(): number {
    return 1200;
  }
  send(payload: Uint8Array): boolean {
    if (this.state !== 'open') return false;
    this.sent.push(payload[0]);
    return true;
  }
  onDatagram(handler: (d: Uint8Array) => void): void {
    this.#handler = handler;
  }
  deliver(d: Uint8Array): void {
    this.#handler(d);
  }
  lastReceivedAt(): number | undefined {
    return undefined;
  }
  rttMs(): number | undefined {
    return undefined;
  }
  stats() {
    return emptyMediaTransportStats();
  }
  close(): void {
    this.closed = true;
    this.state = 'closed';
  }
}

test('prepend: a path added later (a direct path made on the answer) is preferred while open, the others carry on; datagrams come from both', () => {
  const relay = new TestPath('relay-quic', 'relay');
  relay.state = 'open';
  const sw = new MediaPathSwitch([relay]);
  const got: number[] = [];
  sw.onDatagram((d) => got.push(d[0]));
  const moves: string[] = [];
  sw.onSwitch((from, to) => moves.push(`${from?.label ?? '-'} -> ${to?.label ?? '-'}`));
  assert.equal(sw.send(Uint8Array.of(1)), true);
  assert.deepEqual(relay.sent, [1]);

  const direct = new TestPath('direct', 'direct');
  sw.prepend(direct);
  sw.prepend(direct); // twice is once
  assert.deepEqual(sw.paths, [direct, relay]);
  // Not open yet: the relay still carries the media.
  sw.send(Uint8Array.of(2));
  assert.deepEqual(relay.sent, [1, 2]);
  direct.state = 'open';
  sw.send(Uint8Array.of(3));
  assert.deepEqual(direct.sent, [3]);
  assert.deepEqual(relay.sent, [1, 2]);
  direct.state = 'connecting'; // stale: back on the relay at once
  sw.send(Uint8Array.of(4));
  assert.deepEqual(relay.sent, [1, 2, 4]);
  assert.deepEqual(moves, ['- -> relay', 'relay -> direct', 'direct -> relay']);
  // Receivers take both paths at all times.
  relay.deliver(Uint8Array.of(10));
  direct.deliver(Uint8Array.of(11));
  assert.deepEqual(got, [10, 11]);
  sw.close();
  assert.equal(direct.closed, true);
  assert.equal(relay.closed, true);
});

test('prepend after close is ignored (the path is not taken, nor delivered from)', () => {
  const relay = new TestPath('relay-quic', 'relay');
  const sw = new MediaPathSwitch([relay]);
  const got: number[] = [];
  sw.onDatagram((d) => got.push(d[0]));
  sw.close();
  const late = new TestPath('direct', 'direct');
  late.state = 'open';
  sw.prepend(late);
  assert.deepEqual(sw.paths, [relay]);
  late.deliver(Uint8Array.of(1));
  assert.deepEqual(got, []);
});
