/**
 * Child process for the Ctrl-C test in mapped-candidate.test.ts: maps a port for a "call" on
 * the fake PCP gateway given in argv, hooks the mapping's release to SIGINT/SIGTERM the way a
 * command would, reports its candidate and waits to be interrupted.
 */
import { PortMapper } from '../../core/nat/portmap.js';
import { createMappedCandidate } from '../../core/p2p/candidates.js';

const gatewayPort = Number(process.argv[2]);
const mapper = new PortMapper({ gateway: '127.0.0.1', serverPort: gatewayPort, preference: ['pcp'], schedule: { initialMs: 200, maxAttempts: 3 } });
const handle = await createMappedCandidate(mapper, { port: 5000, lifetimeS: 60 });
const keepAlive = setInterval(() => undefined, 1_000);
const onSignal = (signal: string) => {
  void handle.release().then((outcome) => {
    process.stdout.write(`${JSON.stringify({ signal, outcome })}\n`);
    clearInterval(keepAlive);
    process.exitCode = 130;
  });
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);
process.stdout.write(`${JSON.stringify({ candidate: handle.candidate })}\n`);
