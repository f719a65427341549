import { describe, expect, it } from 'vitest';
import { DDSketch } from '../../src/sketch/ddsketch.js';
import { HyperLogLog, hllStandardError } from '../../src/sketch/hyperloglog.js';
import { seededRandom } from '../../src/sources/synthetic.js';

function hllOf(values: Iterable<string>, precision: number): HyperLogLog {
  const h = new HyperLogLog(precision);
  for (const v of values) h.add(v);
  return h;
}

function* range(prefix: string, from: number, to: number): Generator<string> {
  for (let i = from; i < to; i++) yield `${prefix}${i}`;
}

describe('HyperLogLog', () => {
  it('is exact or nearly so for small sets, and counts repeats once', () => {
    expect(new HyperLogLog(12).estimate()).toBe(0);
    for (const n of [1, 2, 10, 50, 200]) {
      const h = hllOf(range('user-', 0, n), 12);
      for (const v of range('user-', 0, n)) h.add(v); // every value again
      expect(Math.abs(h.estimate() - n)).toBeLessThanOrEqual(Math.max(1, n * 0.01));
    }
  });

  it.each([10, 12, 14])('stays within the standard error 1.04/sqrt(2^p) at p=%i', (p) => {
    const sigma = hllStandardError(p);
    const errors: number[] = [];
    for (const n of [5_000, 60_000]) {
      for (let seed = 0; seed < 8; seed++) {
        const est = hllOf(range(`s${seed}-${p}-`, 0, n), p).estimate();
        const rel = (est - n) / n;
        errors.push(rel);
        expect(Math.abs(rel)).toBeLessThan(4 * sigma);
      }
    }
    const rms = Math.sqrt(errors.reduce((s, e) => s + e * e, 0) / errors.length);
    expect(rms).toBeLessThan(1.5 * sigma);
  });

  it('merges exactly: two halves (overlapping) equal one sketch of everything, sparse or dense', () => {
    for (const [p, n] of [
      [14, 100], // both sparse
      [14, 40_000], // both dense
      [12, 3_000], // mixed
    ] as const) {
      const all = hllOf(range('m-', 0, n), p);
      const a = hllOf(range('m-', 0, Math.floor(n * 0.6)), p);
      const b = hllOf(range('m-', Math.floor(n * 0.4), n), p);
      const small = hllOf(range('m-', 0, 5), p);
      small.merge(b);
      a.merge(small);
      expect(a.estimate()).toBe(all.estimate());
      expect(a.toBuffer().equals(all.toBuffer())).toBe(true);
    }
  });

  it('round-trips through bytes and base64 in both forms', () => {
    for (const n of [0, 30, 50_000]) {
      const h = hllOf(range('r-', 0, n), 14);
      const back = HyperLogLog.fromBuffer(h.toBuffer());
      expect(back.estimate()).toBe(h.estimate());
      expect(HyperLogLog.fromBase64(h.toBase64()).toBuffer().equals(h.toBuffer())).toBe(true);
    }
    expect(hllOf(range('r-', 0, 30), 14).toBuffer().length).toBeLessThan(200); // sparse stays small
  });

  it('rejects bad precisions and foreign bytes', () => {
    expect(() => new HyperLogLog(3)).toThrow(/from 4 to 16, got 3/);
    expect(() => new HyperLogLog(17)).toThrow(/got 17/);
    expect(() => HyperLogLog.fromBuffer(Buffer.from([9, 9, 9]))).toThrow(/format version/);
    expect(() => new HyperLogLog(10).merge(new HyperLogLog(11))).toThrow(/precision 10 and 11/);
    expect(hllStandardError(14)).toBeCloseTo(0.008125, 6);
  });
});

type Dist = (rnd: () => number) => number;
const distributions: Record<string, Dist> = {
  uniform: (rnd) => rnd() * 1000,
  lognormal: (rnd) => Math.exp(3 + 2 * Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd())),
  exponential: (rnd) => -Math.log(1 - rnd()) * 50,
  'mixed signs and zeros': (rnd) => {
    const u = rnd();
    if (u < 0.1) return 0;
    return ((u < 0.5 ? -1 : 1) * Math.round(rnd() * 1e6)) / 100;
  },
  constant: () => 42.5,
};

const QS = [0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1];

/** The q-quantile as DDSketch defines it: the value at rank floor(q (n - 1)) of the sorted values. */
function exactQuantile(sorted: readonly number[], q: number): number {
  return sorted[Math.floor(q * (sorted.length - 1))] as number;
}

function expectWithin(sketch: DDSketch, sorted: readonly number[], alpha: number): void {
  const got = sketch.quantiles(QS);
  QS.forEach((q, i) => {
    const exact = exactQuantile(sorted, q);
    const est = got[i] as number;
    expect(Math.abs(est - exact), `q=${q} exact=${exact} est=${est}`).toBeLessThanOrEqual(
      alpha * Math.abs(exact) * (1 + 1e-9) + 1e-300,
    );
  });
}

describe('DDSketch', () => {
  for (const [name, dist] of Object.entries(distributions)) {
    it.each([0.01, 0.05, 0.001])(
      `keeps every quantile within alpha=%s of the true value (${name})`,
      (alpha) => {
        const rnd = seededRandom(name.length * 7919 + Math.round(alpha * 1e4));
        const values = Array.from({ length: 20_000 }, () => dist(rnd));
        const sketch = new DDSketch({ relativeAccuracy: alpha });
        for (const v of values) sketch.add(v);
        const sorted = [...values].sort((a, b) => a - b);
        expect(sketch.count).toBe(values.length);
        expect(sketch.min).toBe(sorted[0]);
        expect(sketch.max).toBe(sorted.at(-1));
        expectWithin(sketch, sorted, alpha);
      },
    );
  }

  it('merges exactly and round-trips through bytes', () => {
    const rnd = seededRandom(5);
    const values = Array.from(
      { length: 10_000 },
      () => distributions['mixed signs and zeros']?.(rnd) as number,
    );
    const whole = new DDSketch();
    const parts = [new DDSketch(), new DDSketch(), new DDSketch()];
    values.forEach((v, i) => {
      whole.add(v);
      parts[i % 3]?.add(v);
    });
    const merged = new DDSketch();
    for (const p of parts) merged.merge(p);
    expect(merged.quantiles(QS)).toEqual(whole.quantiles(QS));
    const back = DDSketch.fromBuffer(merged.toBuffer());
    expect(back.quantiles(QS)).toEqual(whole.quantiles(QS));
    expect(DDSketch.fromBase64(whole.toBase64()).quantiles(QS)).toEqual(whole.quantiles(QS));
    expect(back.count).toBe(values.length);
  });

  it('merges small (sparse) sketches into the same bytes as one sketch of every value', () => {
    const rnd = seededRandom(9);
    for (let trial = 0; trial < 50; trial++) {
      const values = Array.from(
        { length: 1 + Math.floor(rnd() * 40) },
        () => (rnd() - 0.3) * 10 ** (rnd() * 6),
      );
      const whole = new DDSketch();
      const merged = new DDSketch();
      let part = new DDSketch();
      for (const v of values) {
        whole.add(v);
        part.add(v);
        if (rnd() < 0.3) {
          merged.merge(part);
          part = new DDSketch();
        }
      }
      merged.merge(part);
      expect(merged.toBuffer().equals(whole.toBuffer())).toBe(true);
      expect(merged.quantiles(QS)).toEqual(whole.quantiles(QS));
    }
  });

  it('collapses its lowest buckets past max buckets and keeps the guarantee above them', () => {
    const rnd = seededRandom(11);
    // 12 decades of magnitude need ~1400 buckets at 1 %; 128 keep only the top ~1.1 decades.
    const values = Array.from({ length: 20_000 }, () => 10 ** (12 * rnd() - 6));
    const sketch = new DDSketch({ maxBuckets: 128 });
    for (const v of values) sketch.add(v);
    const sorted = [...values].sort((a, b) => a - b);
    expect(sketch.count).toBe(values.length);
    expect(sketch.approxBytes()).toBeLessThan(160 + 8 * (128 + 2 * 32) + 8);
    for (const q of [0.95, 0.99, 1]) {
      const exact = exactQuantile(sorted, q);
      expect(Math.abs((sketch.quantile(q) as number) - exact)).toBeLessThanOrEqual(0.01 * exact * (1 + 1e-9));
    }
    // Below the kept range the answer is the lowest bucket's: too high, but never below min.
    expect(sketch.quantile(0.1) as number).toBeGreaterThan(exactQuantile(sorted, 0.1));
    expect(sketch.quantile(0)).toBe(sorted[0]);
  });

  it('answers null when empty and rejects what it cannot take', () => {
    const s = new DDSketch();
    expect(s.quantile(0.5)).toBeNull();
    expect(s.quantiles([0.5, 0.9])).toEqual([null, null]);
    expect(() => s.add(Number.NaN)).toThrow(/finite/);
    s.add(1);
    expect(() => s.quantile(1.5)).toThrow(/between 0 and 1/);
    expect(() => s.merge(new DDSketch({ relativeAccuracy: 0.02 }))).toThrow(/relative accuracy/);
    expect(() => new DDSketch({ relativeAccuracy: 0 })).toThrow(/between 0 and 1/);
  });
});
