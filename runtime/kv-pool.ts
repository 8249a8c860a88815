// The host side of the paged KV cache: which blocks are free, and which blocks each sequence slot owns.
// The GPU side (the pool buffers and the block table) is in forward.ts; this class decides the table.

export class KvPool {
  private readonly free: number[];
  private readonly owned: number[][]; // per slot: block ids in position order
  private readonly freeSlots: number[];

  constructor(readonly nBlocks: number, readonly blockSize: number, readonly nSlots: number, readonly maxBlocksPerSeq: number) {
    this.free = Array.from({ length: nBlocks }, (_, i) => nBlocks - 1 - i); // pop() hands out 0, 1, 2, ...
    this.owned = Array.from({ length: nSlots }, () => []);
    this.freeSlots = Array.from({ length: nSlots }, (_, i) => nSlots - 1 - i);
  }

  get freeBlocks(): number {
    return this.free.length;
  }
  get usedBlocks(): number {
    return this.nBlocks - this.free.length;
  }

  acquireSlot(): number | null {
    return this.freeSlots.pop() ?? null;
  }

  /** Makes sure `slot` has blocks for positions [0, length). Returns false (and takes nothing) when the pool is short. */
  reserve(slot: number, length: number): boolean {
    const need = Math.ceil(length / this.blockSize);
    if (need > this.maxBlocksPerSeq) throw new Error(`sequence of ${length} positions exceeds the context (${this.maxBlocksPerSeq * this.blockSize})`);
    const have = this.owned[slot]!;
    if (need - have.length > this.free.length) return false;
    while (have.length < need) have.push(this.free.pop()!);
    return true;
  }

  releaseSlot(slot: number): void {
    const blocks = this.owned[slot]!;
    while (blocks.length) this.free.push(blocks.pop()!);
    this.freeSlots.push(slot);
  }

  blocks(slot: number): readonly number[] {
    return this.owned[slot]!;
  }

  /** The block-table row of `slot` (maxBlocksPerSeq u32, unused entries 0). */
  tableRow(slot: number): Uint32Array<ArrayBuffer> {
    const row = new Uint32Array(this.maxBlocksPerSeq);
    row.set(this.owned[slot]!);
    return row;
  }
}
