/** Every built-in FEC scheme passes the exported compliance suite (core/compliance/fec.ts). */
import { describeFecCompliance } from '../../core/compliance/fec.js';
import { loadBuiltinFecSchemes } from './schemes.js';

const schemes = await loadBuiltinFecSchemes();

describeFecCompliance(schemes.none, {
  geometries: [
    { k: 1, r: 0 },
    { k: 5, r: 0 },
    { k: 64, r: 0 },
  ],
});
describeFecCompliance(schemes.xor);
describeFecCompliance(schemes.rs);
describeFecCompliance(schemes.raptorq);
