/**
 * The hard-NAT strategy extension contract. A strategy looks at what netcheck/predict-ports
 * learned about both ends and proposes where to send hole-punching probes.
 */

export interface EndpointObservation {
  /** Reflexive addresses seen by servers, in probe order, as `ip:port`. */
  reflexive: string[];
  /** 'endpoint-independent' | 'address-dependent' | 'address-and-port-dependent' | 'unknown'. */
  mapping: string;
  /** 'port-preserving' | 'sequential' | 'random' | 'unknown'. */
  allocation: string;
  /** Port delta for sequential allocation. */
  delta?: number;
}

export interface ProbePlan {
  /** Remote `ip:port` targets to send probes to, in order. */
  targets: string[];
  /** How many local sockets to open (1 = reuse the shared socket). */
  localSockets: number;
  /** Probe rate limit, packets per second. */
  ratePerSecond: number;
  /** Human-readable reason. */
  rationale: string;
}

export interface NatStrategy {
  readonly name: string;
  readonly version: string;
  readonly description: string;
  /** Whether this strategy has anything to offer for this pair of endpoints. */
  applicable(local: EndpointObservation, remote: EndpointObservation): boolean;
  /** Plan probes; bounded by `maxProbes`. */
  plan(local: EndpointObservation, remote: EndpointObservation, maxProbes: number): ProbePlan;
}

export interface NatStrategyFactory {
  readonly name: string;
  readonly version: string;
  readonly description: string;
  availability(): import('../media/codec-types.js').Availability;
  create(): NatStrategy;
}
