/**
 * `wzp netcheck` in the NAT lab (test/lab/netns.ts): for each of the five NAT modes, the real
 * CLI runs 3 times in the client namespace against coturn and a `wzp relay` in the wan
 * namespace. Prints the median time of the checks (the report's durationMs), of the whole
 * process (Node and CLI start-up included) and of each check, against the 2 s target and
 * Tailscale's 5 s netcheck budget. Needs root and the lab tools; skips with the reason otherwise.
 */
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import type { NetcheckReport } from '../../src/services/netcheck.js';
import { makeHome } from '../helpers/cli.js';
import { LAB_NET, NAT_MODES, NatLab, labAvailable } from '../lab/netns.js';
import { jsonResult, startRelayIn, wzpIn } from '../nat-cli/helpers.js';

export const name = 'netcheck in the NAT lab';

const RUNS = 3;
const TARGET_MS = 2_000;
const TAILSCALE_BUDGET_MS = 5_000;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export async function run(): Promise<void> {
  const availability = await labAvailable();
  if (!availability.ok) {
    console.log(`   skipped: ${availability.reason}`);
    return;
  }
  console.log(`   median of ${RUNS} runs per mode; target ${TARGET_MS} ms, Tailscale's netcheck budget ${TAILSCALE_BUDGET_MS} ms`);
  console.log('   mode                  checks  process  | ipv4 alloc behaviour portmap relay | verdict');
  for (const topology of NAT_MODES) {
    const lab = await NatLab.create({ topology });
    const home = makeHome('wzp-bench-netcheck-');
    const relay = await startRelayIn(lab.namespaces.wan, `${LAB_NET.stunPrimary}:4433`, mkdtempSync(join(home.dir, 'relay-')), home).catch(async (err) => {
      await lab.destroy();
      home.cleanup();
      throw err;
    });
    try {
      const reports: NetcheckReport[] = [];
      const walls: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const stun = `${lab.stun[0].primary.address}:${lab.stun[0].primary.port}`;
        const result = await wzpIn(lab.namespaces.client, ['netcheck', '--json', '--stun', stun, '--relay', relay.address, '--config-dir', join(home.dir, 'client')], home);
        reports.push(jsonResult<NetcheckReport>(result, `netcheck (${topology})`));
        walls.push(result.wallMs);
      }
      const checks = median(reports.map((r) => r.durationMs));
      const wall = median(walls);
      const part = (pick: (r: NetcheckReport) => number) => String(Math.round(median(reports.map(pick)))).padStart(5);
      const verdict = reports.at(-1)?.verdict.kind ?? '?';
      const mark = checks <= TARGET_MS ? 'within target' : 'OVER TARGET';
      console.log(
        `   ${topology.padEnd(21)} ${String(Math.round(checks)).padStart(6)} ${String(Math.round(wall)).padStart(8)}  |` +
          `${part((r) => r.ipv4.durationMs)}${part((r) => r.allocation.durationMs)}${part((r) => r.behaviour.durationMs).padStart(10)}` +
          `${part((r) => r.portMapping.durationMs).padStart(8)}${part((r) => r.relays[0]?.durationMs ?? 0).padStart(6)} | ${verdict}, ${mark}` +
          ` (${((checks / TAILSCALE_BUDGET_MS) * 100).toFixed(0)}% of Tailscale's budget)`,
      );
    } finally {
      await relay.stop();
      await lab.destroy();
      home.cleanup();
    }
  }
}
