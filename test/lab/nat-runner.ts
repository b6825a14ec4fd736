/**
 * Runs one core/nat operation with a fresh UDP socket and prints its result as JSON: the lab
 * starts it inside the client namespace (`ip netns exec NS node nat-runner.js '<request>'`),
 * so real core code meets the real NAT. Errors print `{"error":{name,message}}` and exit 1.
 *
 * `node --test dist/test/` also loads every file under test/ as a test file; without a
 * request argument this script therefore does nothing.
 */
import type dgram from 'node:dgram';
import { type BindingLifetimeOptions, type NatBehaviour, discoverNatBehaviour } from '../../core/nat/behaviour.js';
import { type PortAllocationReport, type PortPrediction, detectPortAllocation, predictPorts } from '../../core/nat/port-allocation.js';
import { type Endpoint, StunClient } from '../../core/nat/stun.js';
import { closeUdpSocket, openUdpSocket } from '../../core/nat/udp.js';

export type NatRunnerRequest =
  | { op: 'discover'; server: Endpoint; bindingLifetime?: Pick<BindingLifetimeOptions, 'intervalsMs'> }
  /** Port allocation over `servers`, a prediction of `k` ports, then one more mapping to `next`. */
  | { op: 'port-allocation'; servers: Endpoint[]; k: number; next: Endpoint };

export type NatRunnerResult<R extends NatRunnerRequest> = R extends { op: 'discover' } ? NatBehaviour : PortAllocationRun;

export interface PortAllocationRun {
  report: PortAllocationReport;
  prediction: PortPrediction;
  /** External port of the extra mapping opened after the prediction. */
  nextMappedPort: number;
}

async function run(request: NatRunnerRequest, socket: dgram.Socket): Promise<NatBehaviour | PortAllocationRun> {
  switch (request.op) {
    case 'discover':
      return discoverNatBehaviour(socket, request.server, { bindingLifetime: request.bindingLifetime });
    case 'port-allocation': {
      const client = new StunClient(socket);
      try {
        const report = await detectPortAllocation(socket, request.servers, { client });
        const prediction = predictPorts(report.observations, request.k);
        const next = await client.binding(request.next, { label: 'allocation-next' });
        return { report, prediction, nextMappedPort: next.mappedAddress.port };
      } finally {
        client.close();
      }
    }
  }
}

async function main(argument: string): Promise<void> {
  const socket = await openUdpSocket('udp4');
  try {
    const result = await run(JSON.parse(argument) as NatRunnerRequest, socket);
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } catch (err) {
    const { name, message } = err as Error;
    process.stdout.write(`${JSON.stringify({ error: { name, message } })}\n`);
    process.exitCode = 1;
  } finally {
    await closeUdpSocket(socket);
  }
}

const argument = process.argv[2];
if (argument !== undefined) await main(argument);
