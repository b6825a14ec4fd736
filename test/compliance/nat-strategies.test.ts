/**
 * wzp's own NAT strategies (src/plugins/nat-sequential, src/plugins/nat-birthday) pass the
 * compliance suite every NAT-strategy plugin passes (core/compliance/nat-strategy.ts), loaded
 * through their hooks as the CLI loads them. The suite runs them in the NAT simulator over
 * every ordered pair of its NAT types and holds each to the success rate its plans claim.
 */
import { describeNatStrategyCompliance } from '../../core/compliance/nat-strategy.js';
import natBirthdayHook from '../../src/plugins/nat-birthday/index.js';
import natSequentialHook from '../../src/plugins/nat-sequential/index.js';

for (const hook of [natSequentialHook, natBirthdayHook]) {
  for (const strategy of await hook()) describeNatStrategyCompliance(strategy);
}
