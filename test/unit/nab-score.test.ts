import { describe, expect, it } from 'vitest';
import {
  normalise,
  optimiseThreshold,
  probationaryLength,
  profiles,
  type ScoredFile,
  scaledSigmoid,
  scoreCorpus,
  sweepFile,
  tallyAtThreshold,
} from '../../bench/nab-score.js';

const standard = profiles.standard;

/** 20 rows at times 0..19 (probation: the first 3), one window over rows 10..14 (width 5). */
function file(scores: Record<number, number>, windows: [number, number][] = [[10, 14]]): ScoredFile {
  const times = Array.from({ length: 20 }, (_, i) => i);
  return { name: 'cat/f.csv', times, scores: times.map((i) => scores[i] ?? 0), windows };
}

const rawAt = (f: ScoredFile, threshold: number) =>
  tallyAtThreshold([sweepFile(f, standard)], threshold, standard);

describe('NAB scoring', () => {
  it('scaled sigmoid: ~0.987 at a window left edge, 0 at its right edge, -1 far after', () => {
    expect(scaledSigmoid(-1)).toBeCloseTo(0.986614, 6);
    expect(scaledSigmoid(0)).toBe(0);
    expect(scaledSigmoid(0.5)).toBeCloseTo(-0.848284, 6);
    expect(scaledSigmoid(3.5)).toBe(-1);
  });

  it('probation is 15% of the rows, at most 750', () => {
    expect(probationaryLength(20)).toBe(3);
    expect(probationaryLength(4032)).toBe(604);
    expect(probationaryLength(10_000)).toBe(750);
  });

  it('a detection at the left edge of a window scores A_TP, normalised to 100', () => {
    const t = rawAt(file({ 10: 1 }), 0.5);
    expect(t).toMatchObject({ tp: 1, fp: 0, fn: 0, windows: 1 });
    expect(t.raw).toBeCloseTo(1, 12);
    expect(normalise(t, standard)).toBeCloseTo(100, 10);
  });

  it('only the earliest detection in a window counts, weighted by its position', () => {
    // Row 12: position -(14 - 12 + 1)/5 = -0.6 → σ(-0.6)/σ(-1) = 0.917429.
    const t = rawAt(file({ 12: 1, 13: 1, 14: 1 }), 0.5);
    expect(t.tp).toBe(1);
    expect(t.raw).toBeCloseTo(0.917429, 6);
    expect(normalise(t, standard)).toBeCloseTo(95.8714, 4);
  });

  it('false positives: full A_FP before the first window, less just after a window; none in probation', () => {
    // Row 5: -0.11. Row 16: (16 - 14)/(5 - 1) = 0.5 past the window → 0.11·σ(0.5) = -0.093311. Row 1: probation.
    const t = rawAt(file({ 1: 1, 5: 1, 10: 1, 16: 1 }), 0.5);
    expect(t).toMatchObject({ tp: 1, fp: 2, fn: 0 });
    expect(t.raw).toBeCloseTo(1 - 0.11 - 0.093311, 6);
  });

  it('a missed window costs A_FN: a detector that never fires scores 0', () => {
    const t = rawAt(file({}), 0.5);
    expect(t).toMatchObject({ tp: 0, fp: 0, fn: 1, raw: -1 });
    expect(normalise(t, standard)).toBe(0);
    expect(normalise(rawAt(file({}, []), 0.5), standard)).toBeNull();
  });

  it('a window inside the probation is not scored, but counts in the perfect score (as NAB)', () => {
    // Rows 0..2 are probationary: window [0, 2] has no scorable row. A detection in [10, 14]
    // at its left edge: raw 1 (no A_FN for the first window); null −1; perfect 2 windows.
    const f = file({ 1: 1, 10: 1 }, [
      [0, 2],
      [10, 14],
    ]);
    const t = rawAt(f, 0.5);
    expect(t).toMatchObject({ tp: 1, fp: 0, fn: 0, windows: 1, labelled: 2 });
    expect(t.raw).toBeCloseTo(1, 12);
    expect(normalise(t, standard)).toBeCloseTo((100 * (1 + 1)) / (2 + 1), 10);
    expect(normalise(rawAt(file({}, [[0, 2]]), 0.5), standard)).toBe(0);
  });

  it('picks the corpus threshold that maximises the raw score', () => {
    // ≥0.95: FP only (-1.11); ≥0.9: TP + FP (0.89); ≥0.5: adds the cheap FP at row 16 (0.796689).
    const f = file({ 5: 0.95, 10: 0.9, 16: 0.5 });
    const best = optimiseThreshold([sweepFile(f, standard)], standard);
    expect(best.threshold).toBe(0.9);
    expect(best.raw).toBeCloseTo(0.89, 12);
    expect(rawAt(f, 0.5).raw).toBeCloseTo(0.796689, 6);
    expect(rawAt(f, 0.95).raw).toBeCloseTo(-1.11, 12);
  });

  it('never firing wins when every detection costs more than it earns', () => {
    // No window: every candidate threshold (0.9, and 0 where every row fires) only adds FPs.
    const best = optimiseThreshold([sweepFile(file({ 5: 0.9, 6: 0.9 }, []), standard)], standard);
    expect(best).toEqual({ threshold: 1.1, raw: 0 });
  });

  it('scores a corpus per group at the one corpus threshold', () => {
    const a = { ...file({ 10: 0.9 }), name: 'one/a.csv' };
    const b = { ...file({ 5: 0.9 }), name: 'two/b.csv' };
    const report = scoreCorpus([a, b], standard, (n) => n.split('/')[0] as string);
    expect(report.threshold).toBe(0.9);
    expect(report.groups.one?.score).toBeCloseTo(100, 10);
    expect(report.groups.two).toMatchObject({ tp: 0, fp: 1, fn: 1 });
    expect(report.total.raw).toBeCloseTo(1 - 0.11 - 1, 12);
    expect(report.total.score).toBeCloseTo((100 * (1 - 0.11 - 1 + 2)) / 4, 10);
  });
});
