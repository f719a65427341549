import { type CalibrationState, TailCalibration } from './calibration.js';
import { EwmaModel, type EwmaParams } from './ewma.js';
import { MadModel, type MadParams } from './mad.js';
import { SeasonalModel, type SeasonalParams } from './seasonal.js';
import { AnomalyStateError, deviation, type Forecast, type Predictor } from './types.js';

export const memberKinds = ['seasonal', 'ewma', 'mad'] as const;
export type MemberKind = (typeof memberKinds)[number];
export const modelKinds = [...memberKinds, 'ensemble'] as const;
export type ModelKind = (typeof modelKinds)[number];

/** Everything that shapes how one series is scored. */
export interface DetectorSpec {
  model: ModelKind;
  ewma: EwmaParams;
  mad: MadParams;
  seasonal: SeasonalParams;
  ensemble: { members: MemberKind[] };
  /** Deviations a model's calibration sees before it scores (cold start: score 0 until then). */
  warmup: number;
  /** Effective number of past deviations the calibration remembers. */
  memory: number;
  /** Half-width of the band around the expected value, in units of the model's scale. */
  band: number;
  /**
   * A value beyond the range of every value seen so far by more than this fraction of the
   * range scores 1 whatever the models say (null: off).
   */
  range: number | null;
  /** A score no higher than one of the last `window` scores is multiplied by `factor`. */
  suppression: { window: number; factor: number };
}

/** The scoring of one value. */
export interface Verdict {
  /** In [0, 1]; 0 during cold start. */
  score: number;
  /** What the model expected, and the band around it; null while no model forecasts yet. */
  expected: number | null;
  lower: number | null;
  upper: number | null;
  /** The value's time was before the series' latest: it was scored, but nothing was learned. */
  late: boolean;
}

export interface SeriesState {
  version: 1;
  /** Latest event time learned (ms), null before the first value. */
  latest: number | null;
  /** Values learned, and their lowest and highest (null before the first: JSON has no Infinity). */
  count: number;
  low: number | null;
  high: number | null;
  members: { kind: MemberKind; model: unknown; calibration: CalibrationState }[];
  /** Recent combined scores that no later one exceeds, as [sequence, score], oldest first (for suppression). */
  recent: [number, number][];
}

interface Member {
  kind: MemberKind;
  predictor: Predictor<unknown> & { restore(state: never): unknown };
  calibration: TailCalibration;
}

function createPredictor(kind: MemberKind, spec: DetectorSpec): Member['predictor'] {
  switch (kind) {
    case 'ewma':
      return new EwmaModel(spec.ewma);
    case 'mad':
      return new MadModel(spec.mad);
    case 'seasonal':
      return new SeasonalModel(spec.seasonal);
  }
}

/**
 * Scores one series online. Each value is scored against what the models learned from the
 * values before it, then learned:
 * 1. each model forecasts (expected value, scale) and the value's deviation is |v − expected| / scale;
 * 2. each model's calibration turns the deviation into a score from the series' own history of
 *    deviations (see TailCalibration); an ensemble takes the highest of its members' scores;
 * 3. a value that leaves the range of all values seen so far (by more than `range` of it)
 *    scores 1: a level never seen before is anomalous even where the models adapt to it;
 * 4. suppression: a score that does not exceed the recent ones is damped, so one incident
 *    raises one alarm rather than a burst of them.
 * A value whose time is before the latest learned one (out of order) is scored the same way
 * but changes no state: a late value must not distort a time-of-day slot or the history.
 */
export class SeriesDetector {
  private readonly members: Member[];
  private latest: number | null = null;
  private count = 0;
  private low = Number.POSITIVE_INFINITY;
  private high = Number.NEGATIVE_INFINITY;
  private recent: [number, number][] = [];

  constructor(private readonly spec: DetectorSpec) {
    const kinds = spec.model === 'ensemble' ? spec.ensemble.members : [spec.model];
    this.members = kinds.map((kind) => ({
      kind,
      predictor: createPredictor(kind, spec),
      calibration: new TailCalibration(spec.memory, spec.warmup),
    }));
  }

  /**
   * Scores `value` at `time` (ms), then learns it unless it is late. A missing value (NaN,
   * ±Infinity) or time is skipped: null, and nothing changes.
   */
  observe(value: number, time: number): Verdict | null {
    if (!Number.isFinite(value) || !Number.isFinite(time)) return null;
    const late = this.latest !== null && time < this.latest;
    const learn = !late;
    let combined = 0;
    let shown: Forecast | null = null;
    for (const { predictor, calibration } of this.members) {
      const forecast = predictor.forecast(time);
      if (forecast) {
        // The band shows the first member that forecasts (members are listed by priority).
        shown ??= forecast;
        combined = Math.max(combined, calibration.score(deviation(value, forecast), learn));
      }
      if (learn) predictor.learn(value, time);
    }
    if (this.outOfRange(value)) combined = 1;
    const score = this.suppress(combined, learn);
    if (learn) {
      this.latest = time;
      this.count++;
      this.low = Math.min(this.low, value);
      this.high = Math.max(this.high, value);
    }
    const half = shown ? this.spec.band * shown.scale : 0;
    return {
      score,
      expected: shown ? shown.expected : null,
      lower: shown ? shown.expected - half : null,
      upper: shown ? shown.expected + half : null,
      late,
    };
  }

  private outOfRange(value: number): boolean {
    const { range, warmup } = this.spec;
    if (range === null || this.count < warmup || this.high <= this.low) return false;
    const margin = range * (this.high - this.low);
    return value > this.high + margin || value < this.low - margin;
  }

  /**
   * Damps a score no higher than the highest of the last `window` scores. The recent scores
   * are kept as a monotonic queue — only those no later score exceeds, as [sequence, score],
   * decreasing — so the highest is at the front and each update is O(1) amortised.
   */
  private suppress(score: number, learn: boolean): number {
    const { window, factor } = this.spec.suppression;
    if (window === 0) return score;
    const recent = this.recent;
    const horizon = this.count - window;
    if (learn) while (recent.length > 0 && (recent[0] as [number, number])[0] < horizon) recent.shift();
    // The first entry still in the window is the highest (a late value must not drop any).
    let recentMax = 0;
    for (const [seq, s] of recent) {
      if (seq >= horizon) {
        recentMax = s;
        break;
      }
    }
    if (learn) {
      while (recent.length > 0 && (recent[recent.length - 1] as [number, number])[1] <= score) recent.pop();
      recent.push([this.count, score]);
    }
    return score > recentMax ? score : score * factor;
  }

  snapshot(): SeriesState {
    return {
      version: 1,
      latest: this.latest,
      count: this.count,
      low: this.count > 0 ? this.low : null,
      high: this.count > 0 ? this.high : null,
      members: this.members.map((m) => ({
        kind: m.kind,
        model: m.predictor.snapshot(),
        calibration: m.calibration.snapshot(),
      })),
      recent: this.recent.map(([seq, score]) => [seq, score]),
    };
  }

  /** Restores a snapshot taken with the same spec; throws AnomalyStateError if it does not fit. */
  restore(state: SeriesState): this {
    if (state?.version !== 1 || !Array.isArray(state.members)) {
      throw new AnomalyStateError(`series state is not a version 1 detector snapshot`);
    }
    const kinds = state.members.map((m) => m.kind).join(',');
    if (kinds !== this.members.map((m) => m.kind).join(',')) {
      throw new AnomalyStateError(`series state (models ${kinds}) does not fit model '${this.spec.model}'`);
    }
    state.members.forEach((s, i) => {
      const member = this.members[i] as Member;
      member.predictor.restore(s.model as never);
      member.calibration.restore(s.calibration);
    });
    this.latest = state.latest;
    this.count = state.count;
    this.low = state.low ?? Number.POSITIVE_INFINITY;
    this.high = state.high ?? Number.NEGATIVE_INFINITY;
    this.recent = state.recent.map(([seq, score]) => [seq, score]);
    return this;
  }
}
