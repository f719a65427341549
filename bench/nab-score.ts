/**
 * The Numenta Anomaly Benchmark's scoring, reimplemented from its rules (see
 * ../shared/data/nab/README.md): pure functions over one detector's scores per file.
 *
 * - The first 15% of each file (at most 750 rows) is probationary and not scored.
 * - Inside a labelled window only the earliest detection counts, weighted by a scaled
 *   sigmoid of its position (A_TP at the left edge, 0 at the right edge); a window with no
 *   detection costs A_FN. A detection outside every window costs up to A_FP, less when it
 *   falls shortly after the previous window.
 * - One threshold for the whole corpus, the one that maximises the raw score; the raw score
 *   is normalised so that a detector that never fires scores 0 and a perfect one 100.
 * - As in NAB, a window with no row after the probation is not scored (no FN, not in the
 *   never-fire baseline) but still counts in the perfect score (NAB's `tpCount`, every window
 *   of the label file).
 */

export interface CostProfile {
  tp: number;
  fp: number;
  fn: number;
}

export const profiles = {
  standard: { tp: 1, fp: 0.11, fn: 1 },
  reward_low_fp: { tp: 1, fp: 0.22, fn: 1 },
  reward_low_fn: { tp: 1, fp: 0.11, fn: 2 },
} as const satisfies Record<string, CostProfile>;

/** One file's detector output: row times, scores in [0, 1], and its windows as [start, end] times. */
export interface ScoredFile {
  name: string;
  times: number[];
  scores: number[];
  windows: [number, number][];
}

/** A scorable row: its detector score, the weight it adds if detected, and its window (-1: none). */
export interface SweepPoint {
  score: number;
  /** A TP's weight (≥ 0, before the window's best-detection rule) or an FP's cost (< 0). */
  weight: number;
  window: number;
}

export interface FileSweep {
  name: string;
  points: SweepPoint[];
  /** Windows with at least one row after the probation: the ones a detection can score. */
  windows: number;
  /** Every labelled window of the file. */
  labelled: number;
}

export interface Tally {
  raw: number;
  tp: number;
  fp: number;
  fn: number;
  /** Scorable windows (tp + fn). */
  windows: number;
  /** Labelled windows, scorable or not (the perfect score's count). */
  labelled: number;
}

/** NAB's scaled sigmoid: ≈0.987 at the left edge of a window (x = -1), 0 at its right edge, → -1 far after it. */
export function scaledSigmoid(x: number): number {
  if (x > 3) return -1;
  return 2 / (1 + Math.exp(5 * x)) - 1;
}

export function probationaryLength(rows: number, percent = 0.15): number {
  return Math.min(Math.floor(percent * rows), percent * 5000);
}

/**
 * The weight of each scorable row of a file (NAB's `calcSweepScore`): inside a window,
 * tp·σ(position)/σ(-1); outside, fp·σ(distance past the previous window) (full -fp before
 * the first window). Window ids are `firstWindowId + index` so several files can be pooled.
 */
export function sweepFile(file: ScoredFile, profile: CostProfile, firstWindowId = 0): FileSweep {
  const { times, scores, windows } = file;
  if (times.length !== scores.length) {
    throw new Error(`${file.name}: ${times.length} rows but ${scores.length} scores`);
  }
  const maxTp = scaledSigmoid(-1);
  const probation = probationaryLength(times.length);
  const points: SweepPoint[] = [];
  const scorable = new Set<number>();
  let next = 0; // next window to enter
  let current = -1; // index of the window we are in
  let left = 0;
  let right = 0;
  let prevRight = -1;
  let prevWidth = 0;
  for (let i = 0; i < times.length; i++) {
    const t = times[i] as number;
    const upcoming = windows[next];
    if (current < 0 && upcoming && t >= upcoming[0]) {
      current = next++;
      left = i;
      right = lastIndexAtOrBefore(times, upcoming[1], i);
    }
    let weight: number;
    if (current >= 0) {
      const width = right - left + 1;
      weight = (scaledSigmoid(-(right - i + 1) / width) * profile.tp) / maxTp;
    } else if (prevRight < 0) {
      weight = -profile.fp;
    } else {
      weight = scaledSigmoid((i - prevRight) / (prevWidth - 1)) * profile.fp;
    }
    if (i >= probation) {
      if (current >= 0) scorable.add(current);
      points.push({
        score: scores[i] as number,
        weight,
        window: current >= 0 ? firstWindowId + current : -1,
      });
    }
    if (current >= 0 && i === right) {
      prevRight = right;
      prevWidth = right - left + 1;
      current = -1;
    }
  }
  return { name: file.name, points, windows: scorable.size, labelled: windows.length };
}

function lastIndexAtOrBefore(times: number[], t: number, from: number): number {
  let i = from;
  while (i + 1 < times.length && (times[i + 1] as number) <= t) i++;
  return i;
}

/** The tally of pooled sweeps when every row scoring ≥ threshold is a detection. */
export function tallyAtThreshold(sweeps: FileSweep[], threshold: number, profile: CostProfile): Tally {
  const best = new Map<number, number>();
  let raw = 0;
  let fp = 0;
  let windows = 0;
  let labelled = 0;
  for (const s of sweeps) {
    windows += s.windows;
    labelled += s.labelled;
    for (const p of s.points) {
      if (p.score < threshold) continue;
      if (p.window < 0) {
        raw += p.weight;
        fp++;
      } else {
        best.set(p.window, Math.max(best.get(p.window) ?? Number.NEGATIVE_INFINITY, p.weight));
      }
    }
  }
  for (const w of best.values()) raw += w;
  const tp = best.size;
  raw -= (windows - tp) * profile.fn;
  return { raw, tp, fp, fn: windows - tp, windows, labelled };
}

/**
 * The threshold that maximises the pooled raw score (NAB's threshold sweep: every distinct
 * score is a candidate, plus "never fire"). Sorting once makes it O(n log n).
 */
export function optimiseThreshold(
  sweeps: FileSweep[],
  profile: CostProfile,
): { threshold: number; raw: number } {
  const points = sweeps.flatMap((s) => s.points).sort((a, b) => b.score - a.score);
  const windows = sweeps.reduce((n, s) => n + s.windows, 0);
  const best = new Map<number, number>();
  let raw = 0 - windows * profile.fn; // not -(…): no -0 when there are no windows
  let top = { threshold: 1.1, raw };
  for (let i = 0; i < points.length; i++) {
    const p = points[i] as SweepPoint;
    if (p.window < 0) raw += p.weight;
    else {
      const before = best.get(p.window) ?? -profile.fn;
      if (p.weight > before) {
        raw += p.weight - before;
        best.set(p.window, p.weight);
      }
    }
    // A threshold admits every row of its score: compare only after the last tie.
    const next = points[i + 1];
    if ((!next || next.score !== p.score) && raw > top.raw) top = { threshold: p.score, raw };
  }
  return top;
}

/**
 * 100·(raw − null)/(perfect − null), as NAB's `normalize`: null is the never-firing score (every
 * scorable window missed), perfect A_TP per labelled window. Never firing scores 0.
 */
export function normalise(t: Tally, profile: CostProfile): number | null {
  if (t.labelled === 0) return null;
  const nullScore = -t.windows * profile.fn;
  const perfect = t.labelled * profile.tp;
  return (100 * (t.raw - nullScore)) / (perfect - nullScore);
}

export interface NabReport {
  threshold: number;
  total: Tally & { score: number | null };
  groups: Record<string, Tally & { score: number | null }>;
}

/**
 * Scores files under one profile: the corpus threshold, the normalised total, and per
 * group (e.g. NAB category, from `groupOf(file name)`) at that same threshold.
 */
export function scoreCorpus(
  files: ScoredFile[],
  profile: CostProfile,
  groupOf: (name: string) => string,
): NabReport {
  let nextWindow = 0;
  const sweeps = files.map((f) => {
    const s = sweepFile(f, profile, nextWindow);
    nextWindow += f.windows.length;
    return s;
  });
  const { threshold } = optimiseThreshold(sweeps, profile);
  const withScore = (t: Tally) => ({ ...t, score: normalise(t, profile) });
  const byGroup = new Map<string, FileSweep[]>();
  for (const s of sweeps) {
    const g = groupOf(s.name);
    byGroup.set(g, [...(byGroup.get(g) ?? []), s]);
  }
  const groups: NabReport['groups'] = {};
  for (const [g, list] of [...byGroup].sort(([a], [b]) => a.localeCompare(b))) {
    groups[g] = withScore(tallyAtThreshold(list, threshold, profile));
  }
  return { threshold, total: withScore(tallyAtThreshold(sweeps, threshold, profile)), groups };
}
