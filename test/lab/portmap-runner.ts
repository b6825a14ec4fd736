/**
 * Runs inside a lab namespace (`ip netns exec NS node portmap-runner.js`) and does what the
 * lab test asks, one JSON request per stdin line, one JSON response per stdout line:
 * port-mapping calls (in the client namespace), UDP listening and sending (client / wan).
 * Serves only when given the argument `serve`; exits when stdin closes, and in any case
 * after MAX_RUNTIME_MS.
 */

import { type Socket, createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { type PortMapEvent, PortMapper, type PortMapping } from '../../core/nat/portmap.js';
import { RUNNER_SERVE_ARG, type RunnerError, type RunnerEvent, type RunnerRequest, type RunnerResponse } from './portmap-topology.js';

const MAX_RUNTIME_MS = 5 * 60_000;
const MAX_SENDS = 50;

const sockets = new Map<number, Socket>();
const received = new Map<number, Set<string>>();
const keeps = new Map<string, { controller: AbortController; done: Promise<PortMapping>; events: PortMapEvent[] }>();

async function handle(request: RunnerRequest, events: PortMapEvent[]): Promise<unknown> {
  const mapper = (): PortMapper => new PortMapper({ ...('mapper' in request ? request.mapper : {}), onProgress: (event) => events.push(event) });
  switch (request.op) {
    case 'listen':
      return listen(request.port);
    case 'await-payload':
      return { arrived: await awaitPayload(request.port, request.payload, request.timeoutMs) };
    case 'send':
      return send(request.host, request.port, request.payload, request.count, request.intervalMs);
    case 'probe':
      return mapper().probe();
    case 'add':
      return mapper().add(request.request);
    case 'delete':
      return mapper().delete(request.mapping);
    case 'list':
      return mapper().list();
    case 'keep-start': {
      const controller = new AbortController();
      const keptEvents: PortMapEvent[] = [];
      const keeper = new PortMapper({ ...request.mapper, onProgress: (event) => keptEvents.push(event) });
      const done = keeper.keep(request.mapping, { signal: controller.signal });
      done.catch(() => undefined); // reported by keep-stop
      keeps.set(request.key, { controller, done, events: keptEvents });
      return { started: true };
    }
    case 'keep-stop': {
      const keep = keeps.get(request.key);
      if (keep === undefined) throw new Error(`no keep named ${request.key}`);
      keeps.delete(request.key);
      keep.controller.abort();
      const mapping = await keep.done;
      events.push(...keep.events);
      return { mapping };
    }
  }
}

async function listen(port: number): Promise<{ port: number }> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, '0.0.0.0', () => resolve());
  });
  const payloads = new Set<string>();
  socket.on('message', (message) => payloads.add(message.toString()));
  sockets.set(port, socket);
  received.set(port, payloads);
  return { port };
}

async function awaitPayload(port: number, payload: string, timeoutMs: number): Promise<boolean> {
  const payloads = received.get(port);
  if (payloads === undefined) throw new Error(`not listening on ${port}`);
  const deadline = Date.now() + timeoutMs;
  while (!payloads.has(payload) && Date.now() < deadline) await delay(20);
  return payloads.has(payload);
}

/** Sends from a fresh socket (a new source port, so a new conntrack flow on the router). */
async function send(host: string, port: number, payload: string, count: number, intervalMs: number): Promise<{ sent: number }> {
  const socket = createSocket('udp4');
  socket.on('error', () => undefined); // ICMP unreachable for unmapped ports is expected
  try {
    const sends = Math.min(count, MAX_SENDS);
    for (let i = 0; i < sends; i++) {
      await new Promise<void>((resolve) => socket.send(payload, port, host, () => resolve()));
      await delay(intervalMs);
    }
    return { sent: sends };
  } finally {
    socket.close();
  }
}

function describe(error: unknown): RunnerError {
  const record = error as { name?: string; message?: string; reason?: string };
  return { name: record?.name ?? 'Error', message: record?.message ?? String(error), reason: record?.reason };
}

/** Events as JSON: a failed attempt's Error becomes its name and message. */
function plainEvent(event: PortMapEvent): RunnerEvent {
  return event.type === 'portmap:failed' ? { ...event, error: describe(event.error) } : event;
}

function respond(response: RunnerResponse): void {
  process.stdout.write(`${JSON.stringify(response)}\n`);
}

/** Serves requests until stdin closes (bounded by MAX_RUNTIME_MS). */
function serve(): void {
  const watchdog = setTimeout(() => process.exit(3), MAX_RUNTIME_MS);
  watchdog.unref();

  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const request = JSON.parse(line) as RunnerRequest & { id: number };
    const events: PortMapEvent[] = [];
    handle(request, events).then(
      (result) => respond({ id: request.id, ok: true, result, events: events.map(plainEvent) }),
      (error: unknown) => respond({ id: request.id, ok: false, error: describe(error), events: events.map(plainEvent) }),
    );
  });
  lines.on('close', () => {
    for (const keep of keeps.values()) keep.controller.abort();
    for (const socket of sockets.values()) socket.close();
    void Promise.allSettled([...keeps.values()].map((keep) => keep.done)).then(() => process.exit(0));
  });
}

// Only when started by LabRunner: `node --test dist/test/` also runs this file, as a no-op.
if (process.argv[2] === RUNNER_SERVE_ARG) serve();
