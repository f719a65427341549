import { FlotillaError } from '../core/errors.js';
import { hash64 } from './hash.js';

/**
 * HyperLogLog distinct counter (Flajolet et al. 2007) over a 64-bit hash, with Ertl's improved
 * estimator ("New cardinality estimation algorithms for HyperLogLog sketches", 2017), which is
 * unbiased from 0 to far beyond 2^32 distinct values without the empirical bias tables of HLL++.
 *
 * Precision p (4..16) gives m = 2^p registers and a standard error of 1.04/sqrt(m):
 * p=10 → 3.25 %, p=12 → 1.63 %, p=14 → 0.81 %, p=16 → 0.41 %. Estimates are within 2 standard
 * errors about 95 % of the time and within 3 about 99.7 %.
 *
 * Small sketches are sparse (a map of the registers set) and turn dense (one byte a register)
 * once that saves memory; both forms give the same estimate, so the form never changes a result.
 * Values are counted by their string form (`'1'` and `1` are the same value).
 */

export const MIN_PRECISION = 4;
export const MAX_PRECISION = 16;
export const DEFAULT_PRECISION = 14;

const FORMAT_VERSION = 1;
const SPARSE = 0;
const DENSE = 1;
// Rough V8 cost of one sparse register (Map entry); the sketch turns dense beyond m / 64 of them.
const SPARSE_ENTRY_BYTES = 24;

const ALPHA_INFINITY = 1 / (2 * Math.log(2));
const hashOut = new Uint32Array(2);

export class HyperLogLogError extends FlotillaError {}

/** Standard error of a HyperLogLog of precision `p`: 1.04 / sqrt(2^p). */
export function hllStandardError(precision: number): number {
  return 1.04 / Math.sqrt(2 ** precision);
}

export class HyperLogLog {
  readonly precision: number;
  private readonly m: number;
  /** Largest register value: leading zeros of the 64 - p hash bits after the index, plus one. */
  private readonly maxRank: number;
  private sparse: Map<number, number> | null = new Map();
  private dense: Uint8Array | null = null;

  constructor(precision = DEFAULT_PRECISION) {
    if (!Number.isInteger(precision) || precision < MIN_PRECISION || precision > MAX_PRECISION) {
      throw new HyperLogLogError(
        `HyperLogLog precision must be an integer from ${MIN_PRECISION} to ${MAX_PRECISION}, got ${precision}`,
      );
    }
    this.precision = precision;
    this.m = 1 << precision;
    this.maxRank = 64 - precision + 1;
  }

  /** Counts one value (by its string form). */
  add(value: string): void {
    hash64(value, hashOut);
    const high = hashOut[0] as number;
    const p = this.precision;
    const index = high >>> (32 - p);
    const rest = high << p;
    // Leading zeros of the 64 - p bits after the index, plus one.
    const rank = rest !== 0 ? Math.clz32(rest) + 1 : 32 - p + Math.clz32(hashOut[1] as number) + 1;
    this.setMax(index, rank);
  }

  private setMax(index: number, rank: number): void {
    const sparse = this.sparse;
    if (sparse) {
      if ((sparse.get(index) ?? 0) >= rank) return;
      sparse.set(index, rank);
      if (sparse.size > this.m >>> 6) this.toDense();
    } else {
      const dense = this.dense as Uint8Array;
      if ((dense[index] as number) < rank) dense[index] = rank;
    }
  }

  private toDense(): void {
    const dense = new Uint8Array(this.m);
    for (const [index, rank] of this.sparse as Map<number, number>) dense[index] = rank;
    this.dense = dense;
    this.sparse = null;
  }

  /** Adds every value counted by `other` (register-wise maximum); both need the same precision. */
  merge(other: HyperLogLog): void {
    if (other.precision !== this.precision) {
      throw new HyperLogLogError(
        `cannot merge HyperLogLogs of precision ${this.precision} and ${other.precision}`,
      );
    }
    if (other.sparse) {
      for (const [index, rank] of other.sparse) this.setMax(index, rank);
      return;
    }
    if (this.sparse) this.toDense();
    const into = this.dense as Uint8Array;
    const from = other.dense as Uint8Array;
    for (let i = 0; i < into.length; i++)
      if ((from[i] as number) > (into[i] as number)) into[i] = from[i] as number;
  }

  /** The estimated number of distinct values (rounded). */
  estimate(): number {
    const q = this.maxRank - 1;
    const histogram = new Float64Array(q + 2);
    if (this.sparse) {
      histogram[0] = this.m - this.sparse.size;
      for (const rank of this.sparse.values()) (histogram[rank] as number)++;
    } else {
      for (const rank of this.dense as Uint8Array) (histogram[rank] as number)++;
    }
    const m = this.m;
    let z = m * tau(1 - (histogram[q + 1] as number) / m);
    for (let k = q; k >= 1; k--) z = 0.5 * (z + (histogram[k] as number));
    z += m * sigma((histogram[0] as number) / m);
    return Math.round((ALPHA_INFINITY * m * m) / z);
  }

  /** Approximate heap bytes of this sketch. */
  approxBytes(): number {
    return 48 + (this.sparse ? this.sparse.size * SPARSE_ENTRY_BYTES : this.m);
  }

  /** [version, precision, form, registers]: sparse as (u16 index, u8 rank) sorted by index. */
  toBuffer(): Buffer {
    if (!this.sparse)
      return Buffer.concat([Buffer.from([FORMAT_VERSION, this.precision, DENSE]), this.dense as Uint8Array]);
    const indexes = [...this.sparse.keys()].sort((a, b) => a - b);
    const buf = Buffer.allocUnsafe(7 + indexes.length * 3);
    buf.writeUInt8(FORMAT_VERSION, 0);
    buf.writeUInt8(this.precision, 1);
    buf.writeUInt8(SPARSE, 2);
    buf.writeUInt32BE(indexes.length, 3);
    let at = 7;
    for (const index of indexes) {
      buf.writeUInt16BE(index, at);
      buf.writeUInt8(this.sparse.get(index) as number, at + 2);
      at += 3;
    }
    return buf;
  }

  static fromBuffer(buf: Uint8Array): HyperLogLog {
    const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    if (view.length < 3 || view[0] !== FORMAT_VERSION) {
      throw new HyperLogLogError(`not a HyperLogLog of format version ${FORMAT_VERSION}`);
    }
    const hll = new HyperLogLog(view[1]);
    if (view[2] === DENSE) {
      if (view.length !== 3 + hll.m)
        throw new HyperLogLogError(`truncated dense HyperLogLog (${view.length} bytes)`);
      hll.sparse = null;
      hll.dense = Uint8Array.from(view.subarray(3));
      return hll;
    }
    const count = view.readUInt32BE(3);
    if (view.length !== 7 + count * 3)
      throw new HyperLogLogError(`truncated sparse HyperLogLog (${view.length} bytes)`);
    for (let i = 0, at = 7; i < count; i++, at += 3)
      hll.setMax(view.readUInt16BE(at), view.readUInt8(at + 2));
    return hll;
  }

  toBase64(): string {
    return this.toBuffer().toString('base64');
  }

  static fromBase64(text: string): HyperLogLog {
    return HyperLogLog.fromBuffer(Buffer.from(text, 'base64'));
  }
}

/** σ(x) = x + Σ_{k≥1} x^(2^k) 2^(k-1) (Ertl, eq. 20): the share of empty registers. */
function sigma(x: number): number {
  if (x === 1) return Number.POSITIVE_INFINITY;
  let y = 1;
  let z = x;
  let previous: number;
  do {
    x *= x;
    previous = z;
    z += x * y;
    y += y;
  } while (z !== previous);
  return z;
}

/** τ(x) = (1 - x - Σ_{k≥1} (1 - x^(2^-k))^2 2^-k) / 3 (Ertl, eq. 21): the share of saturated registers. */
function tau(x: number): number {
  if (x === 0 || x === 1) return 0;
  let y = 1;
  let z = 1 - x;
  let previous: number;
  do {
    x = Math.sqrt(x);
    previous = z;
    y *= 0.5;
    z -= (1 - x) ** 2 * y;
  } while (z !== previous);
  return z / 3;
}
