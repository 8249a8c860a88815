// The host side of the paged KV cache: a pool of fixed-size blocks, the blocks each sequence slot owns
// (its block-table row), and prefix caching. The GPU side (pool buffers, block table) is in forward.ts.
//
// Prefix caching: a full block's contents depend only on the tokens of its sequence up to its end, so a
// full block is named by a hash chain key(block i) = H(key(block i-1), tokens of block i). When a
// sequence ends, its named blocks stay in the pool, unowned, in least-recently-used order; a new sequence
// whose prompt starts with the same tokens takes them (reference-counted) instead of recomputing them.
// An unowned named block is evicted only when a free block is needed.

export class KvPool {
  private readonly free: number[] = []; // never used, or evicted: no contents worth keeping
  private readonly refs: Int32Array; // owners of each block
  private readonly keyOf: (string | null)[]; // prefix key of a full, named block
  private readonly byKey = new Map<string, number>(); // key -> block
  private readonly lru = new Map<number, true>(); // unowned named blocks, oldest first
  private readonly owned: number[][]; // per slot: blocks in position order
  private readonly freeSlots: number[];
  hits = 0; // prompt tokens served from the prefix cache
  lookups = 0; // prompt tokens looked up

  constructor(readonly nBlocks: number, readonly blockSize: number, readonly nSlots: number, readonly maxBlocksPerSeq: number) {
    for (let i = nBlocks - 1; i >= 0; i--) this.free.push(i); // pop() hands out 0, 1, 2, ...
    this.refs = new Int32Array(nBlocks);
    this.keyOf = new Array<string | null>(nBlocks).fill(null);
    this.owned = Array.from({ length: nSlots }, () => []);
    this.freeSlots = Array.from({ length: nSlots }, (_, i) => nSlots - 1 - i);
  }

  /** Blocks that can be handed out now (free + evictable cached ones). */
  get availableBlocks(): number {
    return this.free.length + this.lru.size;
  }
  get usedBlocks(): number {
    return this.nBlocks - this.availableBlocks;
  }
  get cachedBlocks(): number {
    return this.lru.size;
  }
  get freeSlotCount(): number {
    return this.freeSlots.length;
  }

  acquireSlot(): number | null {
    return this.freeSlots.pop() ?? null;
  }

  private take(): number | null {
    const b = this.free.pop();
    if (b !== undefined) return b;
    const oldest = this.lru.keys().next();
    if (oldest.done) return null;
    const victim = oldest.value;
    this.lru.delete(victim);
    this.byKey.delete(this.keyOf[victim]!);
    this.keyOf[victim] = null;
    return victim;
  }

  /** Makes sure `slot` has blocks for positions [0, length). Returns false (and takes nothing) when the pool is short. */
  reserve(slot: number, length: number): boolean {
    const need = Math.ceil(length / this.blockSize);
    if (need > this.maxBlocksPerSeq) throw new Error(`sequence of ${length} positions exceeds the context (${this.maxBlocksPerSeq * this.blockSize})`);
    const have = this.owned[slot]!;
    if (need - have.length > this.availableBlocks) return false;
    while (have.length < need) {
      const b = this.take()!;
      this.refs[b] = 1;
      have.push(b);
    }
    return true;
  }

  /**
   * Attaches to an empty `slot` the cached blocks that hold a prefix of `tokens`, leaving at least the
   * last token to compute (its logits are needed). Returns the number of positions reused.
   */
  attachPrefix(slot: number, tokens: readonly number[]): number {
    const have = this.owned[slot]!;
    if (have.length) throw new Error('attachPrefix on a slot that already holds blocks');
    const usable = Math.floor((tokens.length - 1) / this.blockSize);
    let key = '';
    this.lookups += tokens.length;
    for (let i = 0; i < usable; i++) {
      key = blockKey(key, tokens, i * this.blockSize, this.blockSize);
      const b = this.byKey.get(key);
      if (b === undefined) break;
      if (this.refs[b] === 0) this.lru.delete(b);
      this.refs[b]!++;
      have.push(b);
    }
    this.hits += have.length * this.blockSize;
    return have.length * this.blockSize;
  }

  /** Names the full blocks of `slot` whose positions [0, upTo) hold `tokens`' KV, so later requests can reuse them. */
  publish(slot: number, tokens: readonly number[], upTo: number): void {
    const have = this.owned[slot]!;
    const full = Math.min(Math.floor(upTo / this.blockSize), have.length);
    let key = '';
    for (let i = 0; i < full; i++) {
      key = blockKey(key, tokens, i * this.blockSize, this.blockSize);
      const b = have[i]!;
      if (this.keyOf[b] === key) continue;
      if (this.keyOf[b] !== null || this.byKey.has(key)) continue; // another block already holds this prefix
      this.keyOf[b] = key;
      this.byKey.set(key, b);
    }
  }

  /** Gives back the slot's blocks; named ones stay cached (most recently used last). */
  releaseSlot(slot: number): void {
    const blocks = this.owned[slot]!;
    for (const b of blocks) {
      if (--this.refs[b]! > 0) continue;
      if (this.keyOf[b] !== null) this.lru.set(b, true);
      else this.free.push(b);
    }
    blocks.length = 0;
    this.freeSlots.push(slot);
  }

  /** Drops every cached prefix (e.g. to measure without prefix caching). */
  clearCache(): void {
    for (const b of this.lru.keys()) {
      this.byKey.delete(this.keyOf[b]!);
      this.keyOf[b] = null;
      this.free.push(b);
    }
    this.lru.clear();
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

/** Key of block i given the key of block i-1: the whole token prefix, so keys never collide. */
function blockKey(prev: string, tokens: readonly number[], start: number, n: number): string {
  return prev + tokens.slice(start, start + n).join(',') + ';';
}
