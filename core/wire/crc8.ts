/**
 * CRC-8/ROHC (width 8, polynomial 0x07, init 0xFF, reflected in and out, no final XOR;
 * check value 0xD0 for the ASCII bytes "123456789"). ROHC (RFC 3095) uses this CRC to
 * check a decompressed header against its context; the mini header uses it the same way.
 */

/** The polynomial 0x07, bit-reversed for the reflected (LSB-first) algorithm. */
const REFLECTED_POLYNOMIAL = 0xe0;
const INITIAL_VALUE = 0xff;

const TABLE = buildTable();

function buildTable(): Uint8Array {
  const table = new Uint8Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ REFLECTED_POLYNOMIAL : crc >>> 1;
    table[byte] = crc;
  }
  return table;
}

export function crc8(bytes: Uint8Array): number {
  let crc = INITIAL_VALUE;
  for (const byte of bytes) crc = TABLE[crc ^ byte];
  return crc;
}
