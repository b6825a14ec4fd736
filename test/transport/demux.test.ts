/**
 * The socket demultiplexer alone (core/transport/demux.ts): registration refuses overlapping
 * classes, packets go to the class owning their first byte (QUIC's to the QUIC handler), the
 * counters add up, a throwing handler is counted and never fatal, and raw sends are hardened.
 * Sends go to loopback sockets only.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { describe, it } from 'node:test';
import {
  Demux,
  MAX_ROUTES,
  MAX_SOCKET_SEND_QUEUE,
  QUIC_CLASS,
  mediaPathClass,
  pathCheckClass,
  stunClass,
  type PacketClass,
  type UdpSource,
} from '../../core/transport/demux.js';
import { encodePathCheck } from '../../core/wire/path-check.js';
import { waitFor } from '../helpers/wait.js';

const FROM: UdpSource = { address: '127.0.0.1', port: 40000 };

function fixture(opts: ConstructorParameters<typeof Demux>[2] = {}) {
  const quic: Buffer[] = [];
  const demux = new Demux(
    () => undefined,
    (data) => {
      quic.push(data);
      return Promise.resolve();
    },
    opts,
  );
  return { demux, quic };
}

function collector(name: string, firstBytes: PacketClass['firstBytes'], matches?: PacketClass['matches']) {
  const got: { data: Buffer; from: UdpSource }[] = [];
  const cls: PacketClass = { name, firstBytes, ...(matches ? { matches } : {}), handle: (data, from) => got.push({ data, from }) };
  return { cls, got };
}

describe('Demux registration', () => {
  it('takes disjoint classes and refuses one that overlaps another, naming both', () => {
    const { demux } = fixture();
    demux.register(collector('a', [[0x00, 0x03]]).cls);
    demux.register(collector('b', [[0x04, 0x04], [0x20, 0x2f]]).cls);
    assert.throws(() => demux.register(collector('c', [[0x2f, 0x30]]).cls), (e: Error) => e.name === 'InternalError' && /"c".*0x2f.*"b"/.test(e.message));
    assert.throws(() => demux.register(collector('d', [[0x03, 0x03]]).cls), { name: 'InternalError' });
    // The refused class took nothing: its other bytes are still free.
    assert.equal(demux.ownerOf(0x30), undefined);
    demux.register(collector('e', [[0x30, 0x30]]).cls);
  });

  it("refuses first bytes that are QUIC's (fixed bit 0x40 set)", () => {
    const { demux } = fixture();
    for (const range of [[0x40, 0x40], [0x3f, 0x41], [0x7f, 0x7f], [0xc0, 0xc0], [0xff, 0xff], [0x00, 0xff]] as const) {
      assert.throws(() => demux.register(collector('x', [range]).cls), (e: Error) => e.name === 'InternalError' && /QUIC/.test(e.message), `range ${range.join('-')}`);
    }
    // 0x80-0xBF has the fixed bit clear: free for a class.
    demux.register(collector('high', [[0x80, 0xbf]]).cls);
  });

  it('refuses malformed declarations, a taken name and the name quic', () => {
    const { demux } = fixture();
    demux.register(collector('a', [[0x01, 0x01]]).cls);
    const bad: [string, PacketClass][] = [
      ['a taken name', collector('a', [[0x02, 0x02]]).cls],
      ['the name quic', collector(QUIC_CLASS, [[0x02, 0x02]]).cls],
      ['an empty name', collector('', [[0x02, 0x02]]).cls],
      ['no first bytes', collector('n', []).cls],
      ['a reversed range', collector('r', [[0x05, 0x02]]).cls],
      ['a range past 0xFF', collector('p', [[0xbf, 0x100]]).cls],
      ['a negative byte', collector('m', [[-1, 0x02]]).cls],
      ['a fractional byte', collector('f', [[1.5, 0x02]]).cls],
      ['a byte declared twice', collector('t', [[0x02, 0x03], [0x03, 0x04]]).cls],
    ];
    for (const [name, cls] of bad) assert.throws(() => demux.register(cls), { name: 'InternalError' }, name);
    assert.deepEqual([0x02, 0x03, 0x04].map((b) => demux.ownerOf(b)), [undefined, undefined, undefined]);
  });

  it("unregistering frees the class's bytes and name; a stale unregister does nothing", () => {
    const { demux } = fixture();
    const first = collector('a', [[0x10, 0x11]]);
    const off = demux.register(first.cls);
    off();
    off();
    assert.equal(demux.has('a'), false);
    assert.equal(demux.ownerOf(0x10), undefined);
    const second = collector('a', [[0x10, 0x10]]);
    demux.register(second.cls);
    off();
    assert.equal(demux.ownerOf(0x10), 'a', "the old unregister did not remove the new class");
    void demux.receive(Buffer.of(0x10), FROM);
    assert.equal(second.got.length, 1);
    assert.equal(first.got.length, 0);
  });

  it("wzp's classes fit together, and the socket's first-byte map is the documented one", () => {
    const { demux } = fixture();
    demux.register(stunClass(() => undefined));
    demux.register(mediaPathClass(() => undefined));
    demux.register(pathCheckClass());
    const owners = new Map<string, number[]>();
    for (let b = 0; b < 256; b++) {
      const owner = demux.ownerOf(b) ?? '-';
      owners.set(owner, [...(owners.get(owner) ?? []), b]);
    }
    const ranges = (bytes: number[]) => {
      const out: string[] = [];
      for (let i = 0; i < bytes.length; i++) {
        let j = i;
        while (j + 1 < bytes.length && bytes[j + 1] === bytes[j] + 1) j++;
        const hex = (b: number) => b.toString(16).padStart(2, '0');
        out.push(i === j ? hex(bytes[i]) : `${hex(bytes[i])}-${hex(bytes[j])}`);
        i = j;
      }
      return out.join(',');
    };
    assert.deepEqual(Object.fromEntries([...owners].map(([k, v]) => [k, ranges(v)])), {
      stun: '00-01',
      'media-path': '21-24',
      'path-check': '30',
      quic: '40-7f,c0-ff',
      '-': '02-20,25-2f,31-3f,80-bf',
    });
  });
});

describe('Demux dispatch and counters', () => {
  it('sends QUIC bytes to QUIC, class bytes to the class, and counts the rest as unclaimed', async () => {
    const { demux, quic } = fixture();
    const a = collector('a', [[0x21, 0x24]]);
    const sized = collector('sized', [[0x30, 0x30]], (d) => d.length === 4);
    demux.register(a.cls);
    demux.register(sized.cls);
    const packets = [
      Buffer.of(0x40, 1, 2), // short header
      Buffer.of(0xc3, 0, 0, 0, 1), // long header
      Buffer.of(0x21, 9), // class a
      Buffer.of(0x24, 9, 9), // class a
      Buffer.of(0x30, 1, 2, 3), // sized: matches
      Buffer.of(0x30, 1), // sized: does not match -> unclaimed
      Buffer.of(0x02), // nobody's -> unclaimed
      Buffer.of(0x80, 1), // nobody's (fixed bit clear) -> unclaimed, never QUIC
      Buffer.alloc(0), // empty -> unclaimed
    ];
    for (const p of packets) await demux.receive(p, FROM);
    assert.deepEqual(quic.map((d) => d[0]), [0x40, 0xc3]);
    assert.deepEqual(a.got.map((g) => [...g.data]), [[0x21, 9], [0x24, 9, 9]]);
    assert.deepEqual(a.got[0].from, FROM);
    assert.equal(sized.got.length, 1);
    const s = demux.stats;
    assert.deepEqual(s.classes[QUIC_CLASS], { packets: 2, bytes: 8, errors: 0 });
    assert.deepEqual(s.classes.a, { packets: 2, bytes: 5, errors: 0 });
    assert.deepEqual(s.classes.sized, { packets: 1, bytes: 4, errors: 0 });
    assert.equal(s.unclaimed, 4);
    assert.equal(s.unclaimedBytes, 2 + 1 + 2 + 0);
  });

  it('returns the QUIC handler\'s promise (the gate awaits it), and a resolved one for the rest', async () => {
    let settle!: () => void;
    const pending = new Promise<void>((r) => (settle = r));
    const demux = new Demux(() => undefined, () => pending);
    assert.equal(demux.receive(Buffer.of(0x41), FROM), pending);
    settle();
    await demux.receive(Buffer.of(0x00), FROM);
  });

  it('counts a throwing handler or matcher, reports it rate-limited, and keeps serving', async () => {
    const reports: { cls: string; message: string; suppressed: number }[] = [];
    const { demux } = fixture({
      onHandlerError: (cls, err, _from, suppressed) => reports.push({ cls, message: (err as Error).message, suppressed }),
    });
    let calls = 0;
    demux.register({
      name: 'flaky',
      firstBytes: [[0x05, 0x05]],
      handle: (data) => {
        calls++;
        if (data[1] === 0xee) throw new Error('handler bug');
      },
    });
    demux.register({ name: 'bad-matcher', firstBytes: [[0x06, 0x06]], matches: () => { throw new TypeError('matcher bug'); }, handle: () => undefined });
    for (let i = 0; i < 50; i++) await demux.receive(Buffer.of(0x05, 0xee), FROM);
    await demux.receive(Buffer.of(0x05, 0x01), FROM);
    await demux.receive(Buffer.of(0x06), FROM);
    assert.equal(calls, 51, 'the class kept receiving after its handler threw');
    const s = demux.stats;
    assert.deepEqual(s.classes.flaky, { packets: 51, bytes: 102, errors: 50 });
    assert.equal(s.classes['bad-matcher'].errors, 1);
    assert.ok(reports.length >= 1 && reports.length <= 6, `${reports.length} reports for 51 errors`);
    assert.deepEqual(reports[0], { cls: 'flaky', message: 'handler bug', suppressed: 0 });
  });

  it('survives an error reporter that throws', async () => {
    const { demux } = fixture({ onHandlerError: () => { throw new Error('logger down'); } });
    demux.register({ name: 'x', firstBytes: [[0x07, 0x07]], handle: () => { throw new Error('bug'); } });
    await demux.receive(Buffer.of(0x07), FROM);
    assert.equal(demux.stats.classes.x.errors, 1);
  });
});

async function loopbackSocket(): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
  return s;
}

describe('Demux.send', () => {
  it('sends raw UDP from the socket, refuses non-unicast destinations, and never throws on a closed socket', async () => {
    const [own, peer] = [await loopbackSocket(), await loopbackSocket()];
    const demux = new Demux(() => own, () => Promise.resolve());
    const got: { data: Buffer; port: number }[] = [];
    peer.on('message', (data, rinfo) => got.push({ data, port: rinfo.port }));
    try {
      const key = new Uint8Array(16).fill(7);
      const check = encodePathCheck(
        { type: 'request', transactionId: new Uint8Array(12), callId: new Uint8Array(16), controlling: true, nominate: false, tieBreaker: 1n, priority: 1 },
        key,
      );
      assert.equal(demux.send([check.subarray(0, 10), check.subarray(10)], { host: '127.0.0.1', port: peer.address().port }), true);
      await waitFor(() => got.length === 1);
      assert.deepEqual([...got[0].data], [...check]);
      assert.equal(got[0].port, own.address().port, 'from the demux socket');
      for (const to of [
        { host: '127.0.0.1', port: 0 },
        { host: '224.0.0.1', port: 9 },
        { host: '255.255.255.255', port: 9 },
        { host: '0.0.0.0', port: 9 },
        { host: 'ff02::1', port: 9 },
        { host: '127.0.0.1', port: 70000 },
        { host: 'localhost', port: 9 },
      ]) {
        assert.equal(demux.send(Buffer.of(1), to), false, `${to.host}:${to.port}`);
      }
      assert.equal(demux.stats.sent, 1);
      assert.equal(demux.stats.sendRefused, 7);
    } finally {
      peer.close();
      own.close();
    }
    assert.equal(demux.send(Buffer.of(1), { host: '127.0.0.1', port: 9 }), false);
    assert.equal(demux.stats.sendDropped, 1);
    const noSocket = new Demux(() => undefined, () => Promise.resolve());
    assert.equal(noSocket.send(Buffer.of(1), { host: '127.0.0.1', port: 9 }), false);
  });

  it('drops instead of queueing once the send queue is deep', () => {
    const fake = { getSendQueueCount: () => MAX_SOCKET_SEND_QUEUE + 1, send: () => assert.fail('sent past a full queue') };
    const demux = new Demux(() => fake as unknown as Socket, () => Promise.resolve());
    assert.equal(demux.send(Buffer.of(1), { host: '127.0.0.1', port: 9 }), false);
    assert.equal(demux.stats.sendDropped, 1);
  });

  it('counts a send the kernel refuses after the fact', async () => {
    const fake = {
      getSendQueueCount: () => 0,
      send: (...args: unknown[]) => {
        const cb = args[args.length - 1] as (err: Error | null) => void;
        setImmediate(() => cb(new Error('EPERM')));
      },
    };
    const demux = new Demux(() => fake as unknown as Socket, () => Promise.resolve());
    assert.equal(demux.send(Buffer.of(1), { host: '127.0.0.1', port: 9 }), true);
    await waitFor(() => demux.stats.sendErrors === 1);
  });
});

describe('Demux side-socket routes', () => {
  it('send goes through the routed side socket (plain IPv4 for a mapped address); routes are bounded, refused ones counted, and a side socket never feeds QUIC or STUN', async () => {
    const [own, side, peer] = [await loopbackSocket(), await loopbackSocket(), await loopbackSocket()];
    let quic = 0;
    let stun = 0;
    const demux = new Demux(() => own, () => {
      quic++;
      return Promise.resolve();
    });
    demux.register(stunClass(() => stun++));
    const got: number[] = [];
    peer.on('message', (_d, rinfo) => got.push(rinfo.port));
    try {
      const to = { host: '127.0.0.1', port: peer.address().port };
      const undo = demux.route({ host: '::ffff:127.0.0.1', port: to.port }, side);
      assert.equal(demux.routeOf(to), side);
      assert.equal(demux.send(Buffer.of(0x30), to), true);
      await waitFor(() => got.length === 1);
      assert.equal(got[0], side.address().port, 'left through the side socket');
      undo();
      assert.equal(demux.send(Buffer.of(0x30), to), true);
      await waitFor(() => got.length === 2);
      assert.equal(got[1], own.address().port, 'back on the main socket once unrouted');
      // A peer answering from ever new ports cannot grow the table.
      for (let port = 1; port <= MAX_ROUTES + 50; port++) demux.route({ host: '127.0.0.1', port }, side);
      assert.equal(demux.stats.routesRefused, 50);
      assert.equal(demux.routeOf({ host: '127.0.0.1', port: MAX_ROUTES + 1 }), undefined);
      // QUIC (0x40-0x7F, 0xC0-0xFF) and STUN arriving on a side socket are dropped as unclaimed.
      demux.receiveSide(Buffer.of(0x41, 1, 2), { address: '127.0.0.1', port: 9 });
      demux.receiveSide(Buffer.of(0x00, 1), { address: '127.0.0.1', port: 9 });
      assert.deepEqual([quic, stun, demux.stats.unclaimed], [0, 0, 2]);
    } finally {
      for (const s of [own, side, peer]) s.close();
    }
  });
});
