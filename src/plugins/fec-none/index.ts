/**
 * FEC scheme "none" (scheme id 0): source frames travel alone, nothing is repaired.
 * Only r = 0 is accepted, so a media header never announces repair packets that never come.
 */
import {
  checkFramesToEncode,
  collectBlock,
  validateFecParams,
  type FecCodec,
  type FecParams,
  type FecSchemeFactory,
} from '../../../core/plugin.js';

const NAME = 'none';
const FORMAT = 'fec-none';

function create(params: FecParams): FecCodec {
  validateFecParams(NAME, params, { maxR: 0 });
  return {
    encoder: {
      encode(frames) {
        checkFramesToEncode(NAME, params, frames);
        return [];
      },
    },
    decoder: {
      decode(received, k) {
        return collectBlock(FORMAT, params, received, k).sources;
      },
    },
  };
}

export const noneFecScheme: FecSchemeFactory = {
  name: NAME,
  version: '0.1.0',
  schemeId: 0,
  description: 'No forward error correction: source frames only, every lost frame stays lost',
  guaranteedRecoverable(params) {
    validateFecParams(NAME, params, { maxR: 0 });
    return 0;
  },
  availability: () => ({ available: true }),
  create,
};

/** The `wzp:fec` hook: contributes the "none" scheme. */
export default async function fecNoneHook(): Promise<FecSchemeFactory[]> {
  return [noneFecScheme];
}
