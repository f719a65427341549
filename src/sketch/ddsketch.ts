import { FlotillaError } from '../core/errors.js';

/**
 * DDSketch (Masson, Rim, Lee: "DDSketch: A fast and fully-mergeable quantile sketch with
 * relative-error guarantees", VLDB 2019), with the logarithmic mapping.
 *
 * Why this sketch: its guarantee is a *relative* error on the value — every quantile it returns
 * is within ±alpha × the true value (1 % by default), whatever the distribution, which is what
 * latency-style percentiles need (p99 of 2 s is 2 s ± 20 ms, p50 of 3 ms is 3 ms ± 0.03 ms).
 * Merging two sketches adds bucket counts, so it is exact and order-independent: a window
 * merged from panes, or a state restored from a checkpoint, answers exactly as one sketch fed
 * every value. It is also small and simple (a count per bucket; no compression heuristics like
 * t-digest, whose error depends on the data and on the merge order).
 *
 * Bound: value x > 0 falls in bucket i = ceil(log_γ x) with γ = (1 + α) / (1 - α); the bucket
 * answers 2γ^i / (γ + 1), within α·x of every value in it. A quantile q is the value at rank
 * floor(q · (n - 1)) of the sorted values (the lower quantile); the answer is within α × that
 * value. Negative values are kept in a mirrored store, and values with |x| below ~2.2e-308 are
 * counted as zero. Each store keeps at most `maxBuckets` buckets (default: enough for 18 orders
 * of magnitude between the smallest and largest, 2073 at α = 0.01; memory grows only with the
 * range the values actually span); beyond that the buckets of the smallest magnitudes collapse
 * into one and only quantiles that fall in the collapsed range lose the guarantee. The exact
 * minimum and maximum are kept: q = 0 and q = 1 are exact and no answer falls outside them.
 */

export const DEFAULT_RELATIVE_ACCURACY = 0.01;
/** Orders of magnitude the default bucket budget covers before the lowest buckets collapse. */
const DEFAULT_DECADES = 18;

const FORMAT_VERSION = 1;
const MIN_INDEXABLE = 2.2250738585072014e-308;
/** Buckets a store keeps as sorted (index, count) lists before it turns into a dense array. */
const SPARSE_MAX = 64;
// Buckets added beyond the needed range when a dense store grows, so growth is rare.
const GROWTH = 32;
const NO_COUNTS = new Float64Array(0);

export class DDSketchError extends FlotillaError {}

/**
 * Counts per bucket index. Few buckets are kept sparse (sorted index and count lists: a sketch of
 * a handful of values costs a handful of entries however far apart they are); more, as a dense
 * array over [minIndex, maxIndex]. Past `maxBuckets` indexes the lowest collapse into one. The
 * form never changes the counts, so it never changes an answer.
 */
class BucketStore {
  minIndex = Number.POSITIVE_INFINITY;
  maxIndex = Number.NEGATIVE_INFINITY;
  total = 0;
  /** Sparse form: ascending bucket indexes and their counts; null once dense. */
  private indexes: number[] | null = [];
  private sparseCounts: number[] = [];
  /** Dense form: counts[i - offset] is bucket i. */
  private counts = NO_COUNTS;
  private offset = 0;

  constructor(private readonly maxBuckets: number) {}

  add(index: number, count: number): void {
    if (this.total === 0) {
      this.minIndex = index;
      this.maxIndex = index;
    } else if (index < this.minIndex) {
      // Too far below: it joins the lowest bucket the store can keep.
      index = Math.max(index, this.maxIndex - this.maxBuckets + 1);
      this.minIndex = Math.min(this.minIndex, index);
    } else if (index > this.maxIndex) {
      const lowest = index - this.maxBuckets + 1;
      this.maxIndex = index;
      if (lowest > this.minIndex) this.collapseBelow(lowest);
    }
    this.bump(index, count);
    this.total += count;
  }

  /** Adds `count` to bucket `index`, which lies within [minIndex, maxIndex]. */
  private bump(index: number, count: number): void {
    const indexes = this.indexes;
    if (indexes === null) {
      this.reserve();
      (this.counts[index - this.offset] as number) += count;
      return;
    }
    let lo = 0;
    let hi = indexes.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((indexes[mid] as number) < index) lo = mid + 1;
      else hi = mid;
    }
    if (indexes[lo] === index) (this.sparseCounts[lo] as number) += count;
    else if (indexes.length < SPARSE_MAX) {
      indexes.splice(lo, 0, index);
      this.sparseCounts.splice(lo, 0, count);
    } else {
      this.toDense();
      this.bump(index, count);
    }
  }

  private toDense(): void {
    this.offset = this.minIndex;
    this.counts = new Float64Array(this.maxIndex - this.minIndex + 1 + GROWTH);
    this.each(false, (i, c) => {
      this.counts[i - this.offset] = c;
    });
    this.indexes = null;
    this.sparseCounts = [];
  }

  /** Makes the dense array cover [minIndex, maxIndex], keeping the counts within it. */
  private reserve(): void {
    const { counts, offset, minIndex: lo, maxIndex: hi } = this;
    const end = offset + counts.length;
    if (lo >= offset && hi < end) return;
    // Slack only on the side that grew, so a store that drifts one way does not keep the other.
    const from = lo < offset ? lo - GROWTH : lo;
    const to = hi >= end ? hi + GROWTH : hi;
    const next = new Float64Array(to - from + 1);
    for (let i = Math.max(lo, offset); i <= Math.min(hi, end - 1); i++)
      next[i - from] = counts[i - offset] as number;
    this.counts = next;
    this.offset = from;
  }

  /** Moves the counts of every bucket below `lowest` into bucket `lowest` (the new minIndex). */
  private collapseBelow(lowest: number): void {
    let moved = 0;
    const indexes = this.indexes;
    if (indexes !== null) {
      let k = 0;
      while (k < indexes.length && (indexes[k] as number) < lowest) moved += this.sparseCounts[k++] as number;
      indexes.splice(0, k);
      this.sparseCounts.splice(0, k);
    } else {
      const end = Math.min(lowest, this.offset + this.counts.length);
      for (let i = Math.max(this.minIndex, this.offset); i < end; i++) {
        moved += this.counts[i - this.offset] as number;
        this.counts[i - this.offset] = 0;
      }
    }
    this.minIndex = lowest;
    if (moved > 0) this.bump(lowest, moved);
  }

  /** Calls `fn` for every non-empty bucket, by ascending (or descending) index, until it returns true. */
  each(descending: boolean, fn: (index: number, count: number) => unknown): void {
    if (this.total === 0) return;
    const indexes = this.indexes;
    if (indexes !== null) {
      for (let k = 0; k < indexes.length; k++) {
        const j = descending ? indexes.length - 1 - k : k;
        if (fn(indexes[j] as number, this.sparseCounts[j] as number) === true) return;
      }
      return;
    }
    for (let k = 0; k <= this.maxIndex - this.minIndex; k++) {
      const i = descending ? this.maxIndex - k : this.minIndex + k;
      const c = this.counts[i - this.offset] as number;
      if (c > 0 && fn(i, c) === true) return;
    }
  }

  /** Adds every bucket of `other`. */
  addAll(other: BucketStore): void {
    if (other.total === 0) return;
    const mine = this.indexes;
    const theirs = other.indexes;
    const lo = Math.min(this.minIndex, other.minIndex);
    const hi = Math.max(this.maxIndex, other.maxIndex);
    // Two small sparse stores whose union needs no collapsing: one pass over both sorted lists.
    if (
      mine !== null &&
      theirs !== null &&
      mine.length + theirs.length <= SPARSE_MAX &&
      hi - lo < this.maxBuckets
    ) {
      const indexes: number[] = [];
      const counts: number[] = [];
      let a = 0;
      let b = 0;
      while (a < mine.length || b < theirs.length) {
        const ia = a < mine.length ? (mine[a] as number) : Number.POSITIVE_INFINITY;
        const ib = b < theirs.length ? (theirs[b] as number) : Number.POSITIVE_INFINITY;
        indexes.push(Math.min(ia, ib));
        counts.push(
          (ia <= ib ? (this.sparseCounts[a++] as number) : 0) +
            (ib <= ia ? (other.sparseCounts[b++] as number) : 0),
        );
      }
      this.indexes = indexes;
      this.sparseCounts = counts;
      this.minIndex = lo;
      this.maxIndex = hi;
      this.total += other.total;
      return;
    }
    other.each(false, (i, c) => {
      this.add(i, c);
    });
  }

  /** Non-empty buckets. */
  get size(): number {
    if (this.indexes !== null) return this.indexes.length;
    let n = 0;
    this.each(false, () => {
      n++;
    });
    return n;
  }

  approxBytes(): number {
    return 64 + (this.indexes !== null ? 16 * this.indexes.length : 8 * this.counts.length);
  }
}

export interface DDSketchOptions {
  /** Relative accuracy alpha, 0 < alpha < 1 (default 0.01). */
  relativeAccuracy?: number;
  /** Most buckets per sign before the lowest collapse (default: enough for 18 orders of magnitude). */
  maxBuckets?: number;
}

export class DDSketch {
  readonly relativeAccuracy: number;
  readonly maxBuckets: number;
  private readonly gamma: number;
  private readonly logGamma: number;
  private positive: BucketStore;
  private negative: BucketStore;
  private zeroCount = 0;
  private minValue = Number.POSITIVE_INFINITY;
  private maxValue = Number.NEGATIVE_INFINITY;

  constructor({ relativeAccuracy = DEFAULT_RELATIVE_ACCURACY, maxBuckets }: DDSketchOptions = {}) {
    if (!(relativeAccuracy > 0 && relativeAccuracy < 1)) {
      throw new DDSketchError(
        `DDSketch relative accuracy must be between 0 and 1 (exclusive), got ${relativeAccuracy}`,
      );
    }
    this.gamma = (1 + relativeAccuracy) / (1 - relativeAccuracy);
    this.logGamma = Math.log(this.gamma);
    maxBuckets ??= Math.ceil((DEFAULT_DECADES * Math.LN10) / this.logGamma);
    if (!Number.isInteger(maxBuckets) || maxBuckets < 16) {
      throw new DDSketchError(`DDSketch max buckets must be an integer of at least 16, got ${maxBuckets}`);
    }
    this.relativeAccuracy = relativeAccuracy;
    this.maxBuckets = maxBuckets;
    this.positive = new BucketStore(maxBuckets);
    this.negative = new BucketStore(maxBuckets);
  }

  get count(): number {
    return this.zeroCount + this.positive.total + this.negative.total;
  }

  /** Adds a finite value `count` times. */
  add(value: number, count = 1): void {
    if (!Number.isFinite(value)) throw new DDSketchError(`DDSketch takes finite numbers, got ${value}`);
    if (value > MIN_INDEXABLE) this.positive.add(this.index(value), count);
    else if (value < -MIN_INDEXABLE) this.negative.add(this.index(-value), count);
    else this.zeroCount += count;
    if (value < this.minValue) this.minValue = value;
    if (value > this.maxValue) this.maxValue = value;
  }

  private index(magnitude: number): number {
    return Math.ceil(Math.log(magnitude) / this.logGamma);
  }

  private bucketValue(index: number): number {
    return (2 * Math.exp(index * this.logGamma)) / (1 + this.gamma);
  }

  /** Adds every value of `other`; both need the same relative accuracy. */
  merge(other: DDSketch): void {
    if (other.gamma !== this.gamma) {
      throw new DDSketchError(
        `cannot merge DDSketches of relative accuracy ${this.relativeAccuracy} and ${other.relativeAccuracy}`,
      );
    }
    this.positive.addAll(other.positive);
    this.negative.addAll(other.negative);
    this.zeroCount += other.zeroCount;
    if (other.minValue < this.minValue) this.minValue = other.minValue;
    if (other.maxValue > this.maxValue) this.maxValue = other.maxValue;
  }

  /** The q-quantile (0 ≤ q ≤ 1), within the relative accuracy; null when the sketch is empty. */
  quantile(q: number): number | null {
    return this.quantiles([q])[0] ?? null;
  }

  /** Several quantiles in one pass over the buckets; `qs` in any order. */
  quantiles(qs: readonly number[]): (number | null)[] {
    const n = this.count;
    if (n === 0) return qs.map(() => null);
    for (const q of qs) {
      if (!(q >= 0 && q <= 1)) throw new DDSketchError(`quantile must be between 0 and 1, got ${q}`);
    }
    const order = qs.map((q, i) => ({ rank: Math.floor(q * (n - 1)), i })).sort((a, b) => a.rank - b.rank);
    const out: (number | null)[] = new Array(qs.length).fill(null);
    let next = 0;
    let seen = 0;
    // Answers every pending quantile whose rank the buckets seen so far reach; true when all are.
    const answer = (bucketAnswer: () => number): boolean => {
      for (; next < order.length; next++) {
        const { rank, i } = order[next] as { rank: number; i: number };
        if (seen <= rank) return false;
        // The extreme ranks are the exact min and max, which the sketch keeps.
        if (rank === 0) out[i] = this.minValue;
        else if (rank === n - 1) out[i] = this.maxValue;
        else out[i] = Math.min(this.maxValue, Math.max(this.minValue, bucketAnswer()));
      }
      return true;
    };
    this.negative.each(true, (index, c) => {
      seen += c;
      return answer(() => -this.bucketValue(index));
    });
    seen += this.zeroCount;
    answer(() => 0);
    this.positive.each(false, (index, c) => {
      seen += c;
      return answer(() => this.bucketValue(index));
    });
    return out;
  }

  get min(): number | null {
    return this.count === 0 ? null : this.minValue;
  }

  get max(): number | null {
    return this.count === 0 ? null : this.maxValue;
  }

  /** Approximate heap bytes of this sketch. */
  approxBytes(): number {
    return 96 + this.positive.approxBytes() + this.negative.approxBytes();
  }

  /**
   * [version u8, alpha f64, maxBuckets u32, zero f64, min f64, max f64, positive, negative], a
   * store being [n u32, n × (index i32, count f64)] over its non-empty buckets, ascending.
   */
  toBuffer(): Buffer {
    const stores = [this.positive, this.negative];
    const buf = Buffer.allocUnsafe(37 + 4 * 2 + 12 * (this.positive.size + this.negative.size));
    let at = buf.writeUInt8(FORMAT_VERSION, 0);
    at = buf.writeDoubleBE(this.relativeAccuracy, at);
    at = buf.writeUInt32BE(this.maxBuckets, at);
    at = buf.writeDoubleBE(this.zeroCount, at);
    at = buf.writeDoubleBE(this.minValue, at);
    at = buf.writeDoubleBE(this.maxValue, at);
    for (const s of stores) {
      at = buf.writeUInt32BE(s.size, at);
      s.each(false, (i, c) => {
        at = buf.writeInt32BE(i, at);
        at = buf.writeDoubleBE(c, at);
      });
    }
    return buf;
  }

  static fromBuffer(buf: Uint8Array): DDSketch {
    const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    if (view.length < 45 || view[0] !== FORMAT_VERSION) {
      throw new DDSketchError(`not a DDSketch of format version ${FORMAT_VERSION}`);
    }
    const sketch = new DDSketch({ relativeAccuracy: view.readDoubleBE(1), maxBuckets: view.readUInt32BE(9) });
    sketch.zeroCount = view.readDoubleBE(13);
    sketch.minValue = view.readDoubleBE(21);
    sketch.maxValue = view.readDoubleBE(29);
    let at = 37;
    for (const store of [sketch.positive, sketch.negative]) {
      if (view.length < at + 4) throw new DDSketchError(`truncated DDSketch (${view.length} bytes)`);
      const n = view.readUInt32BE(at);
      at += 4;
      if (view.length < at + 12 * n) throw new DDSketchError(`truncated DDSketch (${view.length} bytes)`);
      for (let j = 0; j < n; j++, at += 12) store.add(view.readInt32BE(at), view.readDoubleBE(at + 4));
    }
    return sketch;
  }

  toBase64(): string {
    return this.toBuffer().toString('base64');
  }

  static fromBase64(text: string): DDSketch {
    return DDSketch.fromBuffer(Buffer.from(text, 'base64'));
  }
}
