/**
 * FEC scheme "raptorq" (scheme id 1): RaptorQ (RFC 6330) through the npm `raptorq` package,
 * the cberner/raptorq crate as a frozen wasm-pack web build (docs/dependencies.md, FEC).
 *
 * Block layout. The crate traps for symbols under 64 bytes, so small frames are packed:
 * every frame gets a slot of S = 2 + longest frame bytes (length-prefixed, zero-padded, see
 * core/media/fec/symbols.ts), the symbol size is T = max(64, S rounded up to 8), and each
 * symbol holds P = floor(T / S) consecutive slots. The block is one RaptorQ object of
 * Ks = ceil(k / P) source symbols. A source symbol is known to the decoder when all of its
 * frames arrived; packing never adds unknowns (a lost frame damages one symbol at most).
 *
 * Repair payload (the crate's 4-byte payload id is rebuilt from the packet index instead):
 * ```
 *  0       2                            2+T
 * +-------+----------------------------+
 * | S     | RaptorQ repair symbol      |
 * | u16BE | T bytes, T % 8 == 0, >= 64 |
 * +-------+----------------------------+
 * ```
 * The crate numbers repair symbols from K' (the RFC 6330 extended block size for Ks), so
 * repair packet j of a block has encoding symbol id K'(Ks) + j.
 *
 * Guarantee. RaptorQ is not MDS: some sets of Ks received symbols do not decode. Whether a
 * loss pattern decodes depends only on which packets arrived (the code is linear), so
 * guaranteedRecoverable is verified, not assumed: the repair coefficient matrix is read off
 * the encoder and every loss pattern of e packets is checked by rank, for every Ks the
 * params allow (memoized per k, r). An e whose patterns exceed a budget is not promised,
 * so the figure is conservative for large blocks.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import {
  binomial,
  checkFramesToEncode,
  checkSymbolSize,
  collectBlock,
  DecodeError,
  gfRankInPlace,
  InternalError,
  PluginError,
  presentRepairs,
  readSymbol,
  subsets,
  symbolSizeFor,
  validateFecParams,
  writeSymbol,
  WzpError,
  type Availability,
  type CollectedBlock,
  type FecCodec,
  type FecPacket,
  type FecParams,
  type FecSchemeFactory,
} from '../../../core/plugin.js';

type RaptorqGlue = typeof import('raptorq/raptorq.js');
/** A compiled wasm module, as the glue's initSync takes it. */
type WasmModule = Parameters<RaptorqGlue['initSync']>[0];
/** The part of the WebAssembly global used here (tsconfig's lib has no WebAssembly types). */
const wasmApi = (globalThis as unknown as { WebAssembly: { Module: new (bytes: Uint8Array) => WasmModule } }).WebAssembly;

const NAME = 'raptorq';
const FORMAT = 'fec-raptorq';
const MIN_SYMBOL_BYTES = 64;
const SYMBOL_ALIGNMENT = 8;
const PAYLOAD_ID_BYTES = 4;
const SLOT_FIELD_BYTES = 2;
/** Loss patterns (rank checks) spent at most verifying one e for one (k, r). */
const VERIFICATION_BUDGET = 100_000;
/** RFC 6330 Table 2: the extended source block sizes K' up to the first one >= 64. */
const EXTENDED_BLOCK_SIZES = [10, 12, 18, 20, 26, 30, 32, 36, 42, 46, 48, 49, 55, 60, 62, 69];

function extendedBlockSize(sourceSymbols: number): number {
  const size = EXTENDED_BLOCK_SIZES.find((kPrime) => kPrime >= sourceSymbols);
  if (size === undefined) throw new InternalError(`raptorq: no K' for ${sourceSymbols} source symbols`);
  return size;
}

// ---------------------------------------------------------------------------------------
// The wasm runtime: one instance, re-instantiated after any trap (a Rust panic leaves it in
// an unknown state). Encoder/Decoder objects never outlive one call, so a fresh instance
// invalidates nothing.

export class RaptorqRuntime {
  constructor(
    private readonly glue: RaptorqGlue,
    private readonly module: WasmModule,
  ) {}

  /** All Ks + r serialized packets (payload id + symbol) for an object of Ks * T bytes. */
  encode(object: Uint8Array, symbolSize: number, r: number): Uint8Array[] {
    return this.guard(
      () => {
        const encoder = this.glue.Encoder.with_defaults(object, symbolSize);
        try {
          return encoder.encode(r);
        } finally {
          encoder.free();
        }
      },
      (cause) => new PluginError(`raptorq: the wasm encoder failed: ${describe(cause)}`, { cause }),
    );
  }

  /** Feed packets until the object decodes; undefined if they are not enough. */
  decode(objectBytes: number, symbolSize: number, packets: Iterable<Uint8Array>): Uint8Array | undefined {
    return this.guard(
      () => {
        const decoder = this.glue.Decoder.with_defaults(BigInt(objectBytes), symbolSize);
        try {
          for (const packet of packets) {
            const object = decoder.decode(packet);
            if (object !== undefined) return object;
          }
          return undefined;
        } finally {
          decoder.free();
        }
      },
      (cause) => new DecodeError(FORMAT, 'wasm-trap', `the wasm decoder failed: ${describe(cause)}`),
    );
  }

  private guard<T>(run: () => T, toError: (cause: unknown) => Error): T {
    try {
      return run();
    } catch (cause) {
      if (cause instanceof WzpError) throw cause;
      this.glue.initSync(this.module);
      throw toError(cause);
    }
  }
}

function describe(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}

/**
 * Load and instantiate the raptorq wasm module, synchronously (throws if the package is
 * missing or broken): the glue is an ES module, loaded with require() (Node >= 20.19), and
 * the 240 KB wasm compiles lazily in ~2 ms. Synchronous so that the scheme can load on first
 * use from availability()/create(), which are synchronous: no call pays for it at start-up
 * (measured: the `wzp:fec` hooks took 18-29 ms with the wasm loaded there, most of it this).
 */
export function loadRaptorqRuntimeSync(): RaptorqRuntime {
  const require = createRequire(import.meta.url);
  const gluePath = require.resolve('raptorq/raptorq.js');
  const glue = require(gluePath) as RaptorqGlue;
  const module = new wasmApi.Module(readFileSync(join(dirname(gluePath), 'raptorq_bg.wasm')));
  glue.initSync(module);
  return new RaptorqRuntime(glue, module);
}

/** loadRaptorqRuntimeSync() as a promise (rejects if the package is missing or broken). */
export async function loadRaptorqRuntime(): Promise<RaptorqRuntime> {
  return loadRaptorqRuntimeSync();
}

// ---------------------------------------------------------------------------------------
// Block layout

interface Layout {
  /** S: bytes per frame slot (length prefix + longest frame). */
  slotSize: number;
  /** T: bytes per RaptorQ symbol. */
  symbolSize: number;
  /** P: frame slots per symbol. */
  slotsPerSymbol: number;
  /** Ks: source symbols in the object. */
  sourceSymbols: number;
}

function symbolSizeForSlot(slotSize: number): number {
  const aligned = Math.ceil(slotSize / SYMBOL_ALIGNMENT) * SYMBOL_ALIGNMENT;
  return Math.max(MIN_SYMBOL_BYTES, aligned);
}

function layoutFor(k: number, slotSize: number): Layout {
  const symbolSize = symbolSizeForSlot(slotSize);
  const slotsPerSymbol = Math.floor(symbolSize / slotSize);
  return { slotSize, symbolSize, slotsPerSymbol, sourceSymbols: Math.ceil(k / slotsPerSymbol) };
}

function slotOffset(layout: Layout, frameIndex: number): number {
  const symbol = Math.floor(frameIndex / layout.slotsPerSymbol);
  return symbol * layout.symbolSize + (frameIndex % layout.slotsPerSymbol) * layout.slotSize;
}

/** A serialized packet: source block 0, 24-bit encoding symbol id, symbol bytes. */
function packetWithId(esi: number, symbol: Uint8Array): Uint8Array {
  const packet = new Uint8Array(PAYLOAD_ID_BYTES + symbol.length);
  packet[1] = esi >>> 16;
  packet[2] = (esi >>> 8) & 0xff;
  packet[3] = esi & 0xff;
  packet.set(symbol, PAYLOAD_ID_BYTES);
  return packet;
}

function payloadId(packet: Uint8Array): { block: number; esi: number } {
  return { block: packet[0], esi: (packet[1] << 16) | (packet[2] << 8) | packet[3] };
}

// ---------------------------------------------------------------------------------------
// Encoder

function encodeBlock(runtime: RaptorqRuntime, params: FecParams, frames: readonly Uint8Array[]): FecPacket[] {
  checkFramesToEncode(NAME, params, frames);
  if (params.r === 0) return [];
  const k = frames.length;
  const layout = layoutFor(k, symbolSizeFor(frames));
  const object = new Uint8Array(layout.sourceSymbols * layout.symbolSize);
  frames.forEach((frame, i) => writeSymbol(frame, object, slotOffset(layout, i)));
  const packets = runtime.encode(object, layout.symbolSize, params.r);
  const firstRepairId = extendedBlockSize(layout.sourceSymbols);
  return Array.from({ length: params.r }, (_, j) => {
    const packet = checkEncodedPacket(packets[layout.sourceSymbols + j], layout, firstRepairId + j);
    const data = new Uint8Array(SLOT_FIELD_BYTES + layout.symbolSize);
    data[0] = layout.slotSize >>> 8;
    data[1] = layout.slotSize & 0xff;
    data.set(packet.subarray(PAYLOAD_ID_BYTES), SLOT_FIELD_BYTES);
    return { index: k + j, repair: true, data };
  });
}

/** The crate's repair packet, checked to match the layout the decoder will rebuild. */
function checkEncodedPacket(packet: Uint8Array | undefined, layout: Layout, expectedId: number): Uint8Array {
  if (packet?.length === PAYLOAD_ID_BYTES + layout.symbolSize) {
    const id = payloadId(packet);
    if (id.block === 0 && id.esi === expectedId) return packet;
  }
  throw new InternalError(`raptorq: the wasm encoder did not produce repair symbol ${expectedId} as expected`);
}

// ---------------------------------------------------------------------------------------
// Decoder

/** The layout announced by the repair payloads, checked against everything else received. */
function repairLayout(params: FecParams, block: CollectedBlock, k: number): Layout {
  const repairs = presentRepairs(block);
  const length = repairs[0].data.length;
  if (length < SLOT_FIELD_BYTES + MIN_SYMBOL_BYTES) {
    throw new DecodeError(FORMAT, 'bad-length', `repair payload of ${length} bytes is under ${SLOT_FIELD_BYTES + MIN_SYMBOL_BYTES}`);
  }
  const slotSize = (repairs[0].data[0] << 8) | repairs[0].data[1];
  for (const { data } of repairs) {
    if (data.length !== length || ((data[0] << 8) | data[1]) !== slotSize) {
      throw new DecodeError(FORMAT, 'bad-length', 'repair payloads of one block disagree on the layout');
    }
  }
  checkSymbolSize(FORMAT, params, block, slotSize);
  if (length !== SLOT_FIELD_BYTES + symbolSizeForSlot(slotSize)) {
    throw new DecodeError(FORMAT, 'bad-length', `repair payload of ${length} bytes does not match slot size ${slotSize}`);
  }
  return layoutFor(k, slotSize);
}

/** Source symbol s, if every frame packed into it arrived. */
function knownSourceSymbol(layout: Layout, block: CollectedBlock, s: number): Uint8Array | undefined {
  const symbol = new Uint8Array(layout.symbolSize);
  const first = s * layout.slotsPerSymbol;
  const end = Math.min(block.sources.length, first + layout.slotsPerSymbol);
  for (let i = first; i < end; i++) {
    const frame = block.sources[i];
    if (frame === undefined) return undefined;
    writeSymbol(frame, symbol, (i - first) * layout.slotSize);
  }
  return symbol;
}

function decodeBlock(
  runtime: RaptorqRuntime,
  params: FecParams,
  received: readonly FecPacket[],
  k: number,
): (Uint8Array | undefined)[] {
  const block = collectBlock(FORMAT, params, received, k);
  const repairs = presentRepairs(block);
  if (block.lost.length === 0 || repairs.length === 0) return block.sources;
  const layout = repairLayout(params, block, k);
  const packets: Uint8Array[] = [];
  for (let s = 0; s < layout.sourceSymbols; s++) {
    const symbol = knownSourceSymbol(layout, block, s);
    if (symbol !== undefined) packets.push(packetWithId(s, symbol));
  }
  if (packets.length + repairs.length < layout.sourceSymbols) return block.sources;
  const firstRepairId = extendedBlockSize(layout.sourceSymbols);
  for (const { j, data } of repairs) packets.push(packetWithId(firstRepairId + j, data.subarray(SLOT_FIELD_BYTES)));
  const objectBytes = layout.sourceSymbols * layout.symbolSize;
  const object = runtime.decode(objectBytes, layout.symbolSize, packets);
  if (object === undefined) return block.sources;
  if (object.length !== objectBytes) {
    throw new DecodeError(FORMAT, 'bad-length', `decoded object of ${object.length} bytes, expected ${objectBytes}`);
  }
  const frames = block.sources.slice();
  for (const i of block.lost) {
    const offset = slotOffset(layout, i);
    frames[i] = readSymbol(FORMAT, object.subarray(offset, offset + layout.slotSize));
  }
  return frames;
}

// ---------------------------------------------------------------------------------------
// Verified erasure guarantee

/**
 * The repair symbols as GF(256) combinations of the Ks source symbols: row j holds the
 * coefficients of repair symbol j. RaptorQ is linear over GF(256) (RFC 6330 5.7, the same
 * field as core/media/fec/gf256.ts) byte by byte, so one encode of unit vectors (source
 * symbol i = a 1 at byte i, Ks <= 64 bytes) reads the whole matrix off the repair bytes.
 */
export function repairCoefficients(runtime: RaptorqRuntime, ks: number, r: number): Uint8Array[] {
  if (ks > MIN_SYMBOL_BYTES) throw new InternalError(`raptorq: cannot probe ${ks} source symbols`);
  const object = new Uint8Array(ks * MIN_SYMBOL_BYTES);
  for (let i = 0; i < ks; i++) object[i * MIN_SYMBOL_BYTES + i] = 1;
  const packets = runtime.encode(object, MIN_SYMBOL_BYTES, r);
  return packets.slice(ks).map((p) => p.slice(PAYLOAD_ID_BYTES, PAYLOAD_ID_BYTES + ks));
}

/**
 * Whether the lost source symbols are determined by the received repair symbols: the
 * submatrix (received repairs x lost sources) has full column rank. The crate's decoder
 * solves the whole system, so this is exactly when it decodes (checked in the tests).
 */
export function repairable(coefficients: readonly Uint8Array[], lost: readonly number[], received: readonly number[]): boolean {
  if (received.length < lost.length) return false;
  const cols = lost.length;
  const m = new Uint8Array(received.length * cols);
  received.forEach((j, row) => lost.forEach((i, col) => (m[row * cols + col] = coefficients[j][i])));
  return gfRankInPlace(m, received.length, cols) === cols;
}

/** Loss patterns of e packets that hit at least one of Ks source symbols (r repairs). */
function patternCount(ks: number, r: number, e: number): number {
  return binomial(ks + r, e) - binomial(r, e);
}

/** Whether every loss of e packets among Ks source + r repair symbols is repairable. */
function allRepairable(coefficients: readonly Uint8Array[], ks: number, r: number, e: number): boolean {
  for (let a = Math.max(1, e - r); a <= Math.min(e, ks); a++) {
    for (const lostRepairs of subsets(r, e - a)) {
      const received = [...Array(r).keys()].filter((j) => !lostRepairs.includes(j));
      for (const lost of subsets(ks, a)) {
        if (!repairable(coefficients, lost, received)) return false;
      }
    }
  }
  return true;
}

/**
 * The largest e such that every loss of e packets is repairable, for every Ks in 1..k (a
 * loss of e frames damages at most e source symbols, so it holds for frames too). Patterns
 * are checked exhaustively; an e whose patterns exceed the budget is not promised.
 */
class GuaranteeVerifier {
  private readonly guarantees = new Map<string, number>();

  constructor(private readonly runtime: RaptorqRuntime) {}

  guarantee(k: number, r: number): number {
    const key = `${k}/${r}`;
    let e = this.guarantees.get(key);
    if (e === undefined) {
      e = this.verify(k, r);
      this.guarantees.set(key, e);
    }
    return e;
  }

  private verify(k: number, r: number): number {
    const sizes = [...Array(k).keys()].map((i) => k - i); // largest first: most likely to fail
    const matrices = new Map<number, Uint8Array[]>();
    const matrix = (ks: number): Uint8Array[] => {
      let m = matrices.get(ks);
      if (m === undefined) matrices.set(ks, (m = repairCoefficients(this.runtime, ks, r)));
      return m;
    };
    for (let e = r; e > 0; e--) {
      const cost = sizes.reduce((sum, ks) => sum + patternCount(ks, r, e), 0);
      if (cost <= VERIFICATION_BUDGET && sizes.every((ks) => allRepairable(matrix(ks), ks, r, e))) return e;
    }
    return 0;
  }
}

// ---------------------------------------------------------------------------------------
// Factory and hook

/**
 * The raptorq scheme over a loaded runtime, or an unavailable one naming why it is not, or
 * over a loader that is called (once) when the scheme is first asked for its availability
 * or used.
 */
export function createRaptorqFecScheme(runtime: RaptorqRuntime | Error | (() => RaptorqRuntime)): FecSchemeFactory {
  let loaded: RaptorqRuntime | Error | undefined = typeof runtime === 'function' ? undefined : runtime;
  const current = (): RaptorqRuntime | Error => {
    if (loaded === undefined) {
      try {
        loaded = (runtime as () => RaptorqRuntime)();
      } catch (err) {
        loaded = err instanceof Error ? err : new Error(String(err));
      }
    }
    return loaded;
  };
  const availability = (): Availability => {
    const r = current();
    return r instanceof Error
      ? {
          available: false,
          reason: `the raptorq wasm module did not load: ${r.message}`,
          hint: 'reinstall wzp so node_modules/raptorq (raptorq.js, raptorq_bg.wasm) is present; Node >= 20.19 is needed',
        }
      : { available: true };
  };
  const requireRuntime = (): RaptorqRuntime => {
    const r = current();
    if (r instanceof Error) throw new PluginError(`FEC scheme raptorq is unavailable: ${r.message}`);
    return r;
  };
  let verifier: GuaranteeVerifier | undefined;
  return {
    name: NAME,
    version: '0.1.0',
    schemeId: 1,
    description: 'RaptorQ (RFC 6330) fountain code, wasm; small frames packed into 64-byte symbols',
    guaranteedRecoverable(params) {
      validateFecParams(NAME, params);
      verifier ??= new GuaranteeVerifier(requireRuntime());
      return verifier.guarantee(params.k, params.r);
    },
    availability,
    create(params): FecCodec {
      validateFecParams(NAME, params);
      const wasm = requireRuntime();
      return {
        encoder: { encode: (frames) => encodeBlock(wasm, params, frames) },
        decoder: { decode: (received, k) => decodeBlock(wasm, params, received, k) },
      };
    },
  };
}

/**
 * The `wzp:fec` hook: contributes the "raptorq" scheme, whose wasm module loads when the
 * scheme is first asked for its availability or used (no call tier uses it by default).
 */
export default async function fecRaptorqHook(): Promise<FecSchemeFactory[]> {
  return [createRaptorqFecScheme(loadRaptorqRuntimeSync)];
}
