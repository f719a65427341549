import { describe, expect, it } from 'vitest';
import type { FlotillaRecord } from '../../src/core/record.js';
import { Coalescer } from '../../src/sinks/shared/coalescer.js';

const rec = (n: number): FlotillaRecord => ({
  id: `t/0/${n}`,
  key: null,
  value: { n },
  timestamp: 0,
  headers: {},
  source: { topic: 't', partition: 0, offset: String(n) },
});

describe('batching by time (Coalescer)', () => {
  it('writes what arrives within the linger as one write; each caller gets its own refused rows', async () => {
    const writes: number[][] = [];
    const c = new Coalescer(30, 1000, async (records, ctx) => {
      writes.push(records.map((r) => (r.value as { n: number }).n));
      for (const r of records)
        if ((r.value as { n: number }).n % 5 === 0) ctx.reject(r, new Error('refused'));
    });
    const refusedBy: Record<string, number[]> = { a: [], b: [] };
    const ctxOf = (who: 'a' | 'b') => ({
      reject: (r: FlotillaRecord) => refusedBy[who]?.push((r.value as { n: number }).n),
    });
    await Promise.all([
      c.submit([1, 2, 3, 5].map(rec), ctxOf('a')),
      c.submit([6, 10, 11].map(rec), ctxOf('b')),
    ]);
    expect(writes).toEqual([[1, 2, 3, 5, 6, 10, 11]]);
    expect(refusedBy).toEqual({ a: [5], b: [10] });
  });

  it('flushes at once when max_rows are waiting, and a failed write fails every caller in it', async () => {
    const writes: number[] = [];
    const c = new Coalescer(10_000, 4, async (records) => {
      writes.push(records.length);
      throw new Error('database down');
    });
    const started = Date.now();
    const results = await Promise.allSettled([
      c.submit([1, 2].map(rec), { reject: () => {} }),
      c.submit([3, 4].map(rec), { reject: () => {} }),
    ]);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(writes).toEqual([4]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
  });
});
