import { describe, expect, it } from 'vitest';
import { clickhouseQuery, postgresQuery } from '../../src/jobs/extract.js';
import { fitSeries } from '../../src/jobs/fit.js';
import { seededRandom } from '../../src/sources/synthetic.js';
import { defaultSpec } from '../../src/steps/anomaly/schema.js';

describe('query parameters', () => {
  it('binds PostgreSQL placeholders as $n, one per name', () => {
    expect(
      postgresQuery('SELECT * FROM t WHERE a = {x} AND b > {y} OR a = {x}', { x: "o'hara", y: 3 }),
    ).toEqual({
      text: 'SELECT * FROM t WHERE a = $1 AND b > $2 OR a = $1',
      values: ["o'hara", 3],
    });
  });

  it('renders ClickHouse placeholders as escaped literals, typed ones as casts', () => {
    expect(
      clickhouseQuery("SELECT {s}, {n}, {d:Date}, {t:DateTime('UTC')}", {
        s: "it's \\ here",
        n: 5,
        d: '2026-01-01',
        t: '2026-01-01 00:00:00',
      }),
    ).toBe(
      "SELECT 'it\\'s \\\\ here', 5, CAST('2026-01-01' AS Date), CAST('2026-01-01 00:00:00' AS DateTime('UTC'))",
    );
    expect(() => clickhouseQuery('SELECT {x:Int32) FROM}', { x: 1 })).toThrow(/not a ClickHouse type/);
    expect(() => clickhouseQuery('SELECT {x:Int32; DROP}', { x: 1 })).toThrow(/not a ClickHouse type/);
  });
});

describe('fitting a series', () => {
  const HOUR = 3_600_000;
  const history = (value: (h: number, noise: number) => number, hours = 24 * 21) => {
    const random = seededRandom(11);
    const times = new Float64Array(hours);
    const values = new Float64Array(hours);
    for (let h = 0; h < hours; h++) {
      times[h] = Date.UTC(2026, 0, 1) + h * HOUR;
      values[h] = value(h, (random() + random() + random() - 1.5) * 2);
    }
    return { times, values };
  };

  it('picks the seasonal model for a daily pattern and learns its baselines', () => {
    const fit = fitSeries(
      history((h, e) => 100 + 50 * Math.sin((2 * Math.PI * (h % 24)) / 24) + e),
      defaultSpec,
      false,
    );
    expect(fit.model).toBe('seasonal');
    expect(fit.loss).toBeLessThan(fit.baselineLoss as number);
    const seasonal = fit.parameters.state?.members[0]?.model as { mean: number[] } | undefined;
    const mean = seasonal?.mean ?? [];
    expect(mean[6]).toBeCloseTo(150, -1);
    expect(mean[18]).toBeCloseTo(50, -1);
    expect(fit.parameters.state?.count).toBe(24 * 21);
  });

  it('picks EWMA for a level that wanders with no daily shape', () => {
    let level = 50;
    const fit = fitSeries(
      history((_, e) => {
        level += e * 3;
        return level;
      }),
      defaultSpec,
      false,
    );
    expect(fit.model).toBe('ewma');
    expect(fit.parameters.ewma?.alpha).toBeGreaterThanOrEqual(0.2);
  });

  it('keeps a model the step fixes and only fits its weight', () => {
    const fit = fitSeries(
      history((h, e) => 10 + (h % 24) + e),
      { ...defaultSpec, model: 'ewma' },
      true,
    );
    expect(fit.model).toBe('ewma');
    expect(fit.parameters.model).toBe('ewma');
  });
});
