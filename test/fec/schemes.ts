/** The four built-in FEC schemes, loaded through their `wzp:fec` hooks as the CLI does. */
import type { FecSchemeFactory } from '../../core/media/fec-types.js';
import noneHook from '../../src/plugins/fec-none/index.js';
import raptorqHook from '../../src/plugins/fec-raptorq/index.js';
import rsHook from '../../src/plugins/fec-rs/index.js';
import xorHook from '../../src/plugins/fec-xor/index.js';

export interface BuiltinFecSchemes {
  none: FecSchemeFactory;
  xor: FecSchemeFactory;
  rs: FecSchemeFactory;
  raptorq: FecSchemeFactory;
}

async function only(hook: () => Promise<FecSchemeFactory[]>): Promise<FecSchemeFactory> {
  const [factory, ...rest] = await hook();
  if (factory === undefined || rest.length > 0) throw new Error('a built-in FEC plugin must contribute exactly one scheme');
  return factory;
}

export async function loadBuiltinFecSchemes(): Promise<BuiltinFecSchemes> {
  const [none, xor, rs, raptorq] = await Promise.all([noneHook, xorHook, rsHook, raptorqHook].map(only));
  return { none, xor, rs, raptorq };
}
