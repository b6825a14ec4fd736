/**
 * The compliance suites every extension passes, built-in or third-party
 * (`import { describeCodecCompliance, describeFecCompliance, describeMediaTransportCompliance,
 * describeNatStrategyCompliance } from 'wzp/compliance'`).
 */
export * from './codec.js';
export * from './fec.js';
export * from './media-transport.js';
export * from './nat-strategy.js';
