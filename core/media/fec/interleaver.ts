/**
 * The FEC pipeline around a scheme: interleaving on the sending side, grouping by block id
 * on the receiving side. The scheme itself stays per-block.
 *
 * Interleaving with depth D. The sender fills D blocks of K frames at a time (a group):
 * frame n of the group goes to block n mod D as its frame floor(n / D), and is sent at
 * once; when the group is full, the repair packets of its D blocks follow, again one block
 * after the other (repair 0 of each block, then repair 1, ...). The whole group is thus
 * sent round-robin over its blocks, so a burst of B consecutive lost packets hits each
 * block of a full group at most ceil(B / D) times: a block that survives n losses survives
 * a burst of n * D.
 *
 * Added delay: none for frames that arrive (they go out in time order, at once). A lost
 * frame can be rebuilt only once its group's repair packets are in: up to D * K frame
 * durations after it was sent (K = 5 at 20 ms: 100 ms with D = 1, 200 ms with D = 2). The
 * jitter buffer must cover that for repaired frames to be played.
 *
 * Short blocks: when a group is closed early (flush: end of a talk spurt, tier change) its
 * blocks hold fewer than K frames. Their source packets already went out with the nominal
 * K, so a block's k is the one its repair packets carry; the assembler takes it from them.
 */
import { UsageError } from '../../errors.js';
import { sourcePackets } from './block.js';
import { FEC_MAX_K, FEC_MAX_R, type FecDecoder, type FecEncoder, type FecPacket } from '../fec-types.js';

/** Largest interleaving depth accepted. */
export const FEC_MAX_INTERLEAVE_DEPTH = 64;

/** One packet with the block fields its media header carries. */
export interface FecBlockPacket {
  /** Block id, increasing by one per block (the receiver unwraps the header's field). */
  blockId: number;
  /**
   * Frames in the block: the header's k. Exact in repair packets; in source packets the
   * nominal K, which a block closed early does not reach.
   */
  k: number;
  /** Repair packets in the block: the header's r. */
  r: number;
  packet: FecPacket;
}

/** A block's packets in index order: its source frames as-is, then its repair packets. */
export function encodeFecBlock(encoder: FecEncoder, frames: readonly Uint8Array[]): FecPacket[] {
  return [...sourcePackets(frames), ...encoder.encode(frames)];
}

function checkBlockCount(what: string, value: number): void {
  if (!Number.isInteger(value) || value < 1 || value > FEC_MAX_INTERLEAVE_DEPTH) {
    throw new UsageError(`FEC ${what} must be an integer 1..${FEC_MAX_INTERLEAVE_DEPTH}, got ${String(value)}`);
  }
}

/** The packets of several blocks in round-robin send order: column by column. */
export function interleave(blocks: readonly (readonly FecBlockPacket[])[]): FecBlockPacket[] {
  const out: FecBlockPacket[] = [];
  const columns = Math.max(0, ...blocks.map((b) => b.length));
  for (let column = 0; column < columns; column++) {
    for (const block of blocks) if (column < block.length) out.push(block[column]);
  }
  return out;
}

export interface FecInterleaverOptions {
  /** Encoder created for (k, r); it also codes the shorter blocks of a group closed early. */
  encoder: FecEncoder;
  k: number;
  r: number;
  /** Interleaving depth D, 1..64 (1: plain block FEC). */
  depth: number;
  /** Id of the group's first block (default 0); each group takes the next `depth` ids. */
  firstBlockId?: number;
}

/** Sending side: each frame goes out at once; a full group's repair packets follow it. */
export class FecInterleaver {
  private blocks: Uint8Array[][] = [];
  private framesInGroup = 0;
  private groupBlockId: number;

  constructor(private readonly options: FecInterleaverOptions) {
    checkBlockCount('interleave depth', options.depth);
    this.groupBlockId = options.firstBlockId ?? 0;
    this.blocks = this.emptyGroup();
  }

  /** Take the next frame (time order); returns the packets to send now. */
  push(frame: Uint8Array): FecBlockPacket[] {
    const { k, r, depth } = this.options;
    const slot = this.framesInGroup % depth;
    const packet = { index: this.blocks[slot].length, repair: false, data: frame };
    this.blocks[slot].push(frame);
    this.framesInGroup++;
    const sent: FecBlockPacket[] = [{ blockId: this.groupBlockId + slot, k, r, packet }];
    if (this.framesInGroup === k * depth) sent.push(...this.flush());
    return sent;
  }

  /** Close the group now (end of a talk spurt or of the call): the repair packets for what it holds. */
  flush(): FecBlockPacket[] {
    const { encoder, r } = this.options;
    const repairs = this.blocks
      .map((frames, slot) => ({ blockId: this.groupBlockId + slot, frames }))
      .filter(({ frames }) => frames.length > 0)
      .map(({ blockId, frames }) => encoder.encode(frames).map((packet) => ({ blockId, k: frames.length, r, packet })));
    if (this.framesInGroup > 0) this.groupBlockId += this.options.depth;
    this.blocks = this.emptyGroup();
    this.framesInGroup = 0;
    return interleave(repairs);
  }

  private emptyGroup(): Uint8Array[][] {
    return Array.from({ length: this.options.depth }, () => []);
  }
}

/** A block handed to the playout side. */
export interface DecodedFecBlock {
  blockId: number;
  /** Length k; undefined where a frame was neither received nor recovered. */
  frames: (Uint8Array | undefined)[];
}

export interface FecAssemblerStats {
  /**
   * Packets dropped: late (block already handed on), duplicate, with an impossible k, r or
   * index, or not fitting the block's r and k.
   */
  droppedPackets: number;
  /** Blocks whose repair data the decoder rejected (DecodeError); their source frames were still handed on. */
  decodeErrors: number;
}

export interface FecAssemblerOptions {
  /**
   * The decoder for a block of the header's k and r (a tier change changes them), e.g. one
   * cached per (k, r), created with maxFrameBytes FEC_MAX_FRAME_BYTES if unknown.
   */
  decoderFor(k: number, r: number): FecDecoder;
  /**
   * How many block ids a block stays open behind the newest block seen. With interleaving
   * depth D every packet of block b is sent before any packet of block b + D, so D works for
   * in-order delivery; D + 1 tolerates some reordering.
   */
  window: number;
}

/** Header fields a decoder could accept: k 1..64, r 0..64, index 0..k+r-1, repair = index >= k. */
function plausiblePacket({ k, r, packet }: FecBlockPacket): boolean {
  const inRange = (v: number, min: number, max: number) => Number.isInteger(v) && v >= min && v <= max;
  return (
    inRange(k, 1, FEC_MAX_K) &&
    inRange(r, 0, FEC_MAX_R) &&
    inRange(packet.index, 0, k + r - 1) &&
    packet.repair === packet.index >= k
  );
}

interface OpenBlock {
  k: number;
  r: number;
  /** Whether k came from a repair packet (exact) rather than a source packet (nominal). */
  kFromRepair: boolean;
  packets: FecPacket[];
  indexes: Set<number>;
  sources: number;
}

/**
 * Receiving side: groups packets by block id and hands each block on exactly once, as soon
 * as all its source frames are in (no decoding), as soon as its decoder recovers every
 * frame, or when it falls `window` blocks behind the newest (decoding what arrived).
 */
export class FecBlockAssembler {
  readonly stats: FecAssemblerStats = { droppedPackets: 0, decodeErrors: 0 };
  private readonly open = new Map<number, OpenBlock>();
  private readonly done = new Set<number>();
  private newest = -Infinity;
  /** Every block below this id has been handed on. */
  private closedBelow = -Infinity;

  constructor(private readonly options: FecAssemblerOptions) {
    checkBlockCount('assembler window', options.window);
  }

  /** Add one received packet; returns the blocks it completed or pushed out of the window. */
  push(p: FecBlockPacket): DecodedFecBlock[] {
    const out: DecodedFecBlock[] = [];
    if (this.accept(p)) {
      const block = this.open.get(p.blockId) as OpenBlock;
      const frames = this.tryComplete(block);
      if (frames !== undefined) out.push(this.close(p.blockId, frames));
    }
    if (p.blockId > this.newest) {
      this.newest = p.blockId;
      out.push(...this.expireBefore(this.newest - this.options.window + 1));
    }
    return out;
  }

  /** Hand on every open block with an id below `blockId` (its playout deadline passed). */
  expireBefore(blockId: number): DecodedFecBlock[] {
    this.closedBelow = Math.max(this.closedBelow, blockId);
    const expired = [...this.open.keys()].filter((id) => id < blockId).sort((a, b) => a - b);
    for (const id of this.done) if (id < blockId) this.done.delete(id);
    return expired.map((id) => this.close(id, this.decode(this.open.get(id) as OpenBlock)));
  }

  /** Hand on every open block (end of the call). */
  flush(): DecodedFecBlock[] {
    return this.expireBefore(Infinity);
  }

  private accept(p: FecBlockPacket): boolean {
    const block = this.blockFor(p);
    if (block === undefined || block.indexes.has(p.packet.index)) {
      this.stats.droppedPackets++;
      return false;
    }
    block.packets.push(p.packet);
    block.indexes.add(p.packet.index);
    if (!p.packet.repair) block.sources++;
    return true;
  }

  /**
   * The open block a packet belongs to (opened by its first packet), or undefined to drop
   * it. Repair packets fix the block's k; until one arrives, the source packets' k stands.
   */
  private blockFor(p: FecBlockPacket): OpenBlock | undefined {
    if (p.blockId < this.closedBelow || this.done.has(p.blockId) || !plausiblePacket(p)) return undefined;
    const block = this.open.get(p.blockId);
    if (block === undefined) {
      const opened = { k: p.k, r: p.r, kFromRepair: p.packet.repair, packets: [], indexes: new Set<number>(), sources: 0 };
      this.open.set(p.blockId, opened);
      return opened;
    }
    if (p.r !== block.r) return undefined;
    if (!p.packet.repair) return p.packet.index < block.k && p.k >= block.k ? block : undefined;
    if (block.kFromRepair) return p.k === block.k ? block : undefined;
    if (p.k > block.k || block.packets.some((q) => q.index >= p.k)) return undefined;
    block.k = p.k;
    block.kFromRepair = true;
    return block;
  }

  /** The block's frames if they are all there or all recoverable now, else undefined. */
  private tryComplete(block: OpenBlock): (Uint8Array | undefined)[] | undefined {
    if (block.sources === block.k) return this.decode(block);
    if (block.packets.length < block.k || block.sources === block.packets.length) return undefined;
    const frames = this.decode(block);
    return frames.every((f) => f !== undefined) ? frames : undefined;
  }

  private decode(block: OpenBlock): (Uint8Array | undefined)[] {
    try {
      return this.options.decoderFor(block.k, block.r).decode(block.packets, block.k);
    } catch (err) {
      if (!(err instanceof Error) || err.name !== 'DecodeError') throw err;
      this.stats.decodeErrors++;
      const frames: (Uint8Array | undefined)[] = new Array(block.k).fill(undefined);
      for (const p of block.packets) if (!p.repair && p.index < block.k) frames[p.index] = p.data;
      return frames;
    }
  }

  private close(blockId: number, frames: (Uint8Array | undefined)[]): DecodedFecBlock {
    this.open.delete(blockId);
    this.done.add(blockId);
    return { blockId, frames };
  }
}
