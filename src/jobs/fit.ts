import { type DetectorSpec, type MemberKind, SeriesDetector } from '../steps/anomaly/detector.js';
import { EwmaModel } from '../steps/anomaly/ewma.js';
import type { ModelParameters } from '../steps/anomaly/index.js';
import { applyTuning, type Tuning } from '../steps/anomaly/schema.js';
import { SeasonalModel } from '../steps/anomaly/seasonal.js';
import type { Predictor } from '../steps/anomaly/types.js';

/** Smoothing weights tried for the seasonal and EWMA models. */
export const ALPHA_GRID = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4] as const;
/** A squared standardised error counts at most this much: anomalies in the history must not decide the fit. */
const MAX_SQUARED_Z = 25;
/** Points where every candidate forecasts, needed before one candidate is preferred to another. */
const MIN_SCORED_POINTS = 10;

/** One series' history, sorted by time. */
export interface SeriesHistory {
  times: Float64Array;
  values: Float64Array;
}

export interface SeriesFit {
  parameters: ModelParameters;
  model: DetectorSpec['model'];
  /** Mean one-step-ahead loss (Gaussian negative log-likelihood, robust) of the fitted and of the step's own configuration. */
  loss: number | null;
  baselineLoss: number | null;
}

type Fitted = 'seasonal' | 'ewma';

interface Candidate {
  kind: Fitted;
  alpha: number;
  losses: Float64Array;
}

/**
 * One-step-ahead losses of a model over the history: each value is scored against the forecast
 * from the values before it, then learned (as the step does). NaN where it does not forecast yet.
 */
function losses(predictor: Predictor<unknown>, h: SeriesHistory): Float64Array {
  const out = new Float64Array(h.values.length);
  for (let i = 0; i < out.length; i++) {
    const v = h.values[i] as number;
    const t = h.times[i] as number;
    const f = predictor.forecast(t);
    if (f) {
      const scale = Math.max(f.scale, 1e-9 * Math.max(1, Math.abs(f.expected)));
      const z = (v - f.expected) / scale;
      out[i] = Math.log(scale) + 0.5 * Math.min(z * z, MAX_SQUARED_Z);
    } else out[i] = Number.NaN;
    predictor.learn(v, t);
  }
  return out;
}

function candidate(kind: Fitted, alpha: number, spec: DetectorSpec, h: SeriesHistory): Candidate {
  const predictor =
    kind === 'seasonal' ? new SeasonalModel({ ...spec.seasonal, alpha }) : new EwmaModel({ alpha });
  return { kind, alpha, losses: losses(predictor, h) };
}

/** Mean loss of each candidate over the points where all of them forecast (null: too few). */
function meanLosses(candidates: readonly Candidate[]): (number | null)[] {
  const n = candidates[0]?.losses.length ?? 0;
  const sums = new Array<number>(candidates.length).fill(0);
  let scored = 0;
  for (let i = 0; i < n; i++) {
    if (candidates.some((c) => Number.isNaN(c.losses[i] as number))) continue;
    scored++;
    candidates.forEach((c, k) => {
      sums[k] = (sums[k] as number) + (c.losses[i] as number);
    });
  }
  return sums.map((s) => (scored >= MIN_SCORED_POINTS ? s / scored : null));
}

function best(candidates: readonly Candidate[]): { fit: Candidate; loss: number } | undefined {
  const means = meanLosses(candidates);
  let pick: { fit: Candidate; loss: number } | undefined;
  candidates.forEach((c, k) => {
    const m = means[k];
    if (m !== null && m !== undefined && (!pick || m < pick.loss)) pick = { fit: c, loss: m };
  });
  return pick;
}

const grid = (kind: Fitted, spec: DetectorSpec, h: SeriesHistory) =>
  ALPHA_GRID.map((alpha) => candidate(kind, alpha, spec, h));

/**
 * Fits one series: the smoothing weight of its seasonal and EWMA baselines by one-step-ahead
 * loss on its history, and — when the step does not fix `model` — which of the two scores it.
 * The result's `state` is a detector that has learned the whole history with those parameters:
 * seasonal baselines per slot, EWMA level, calibration of scores. A step given these parameters
 * scores the series' next values as if it had seen its history.
 */
export function fitSeries(h: SeriesHistory, base: DetectorSpec, modelPinned: boolean): SeriesFit {
  const tuning: Tuning = {};
  let loss: number | null = null;
  let baselineLoss: number | null = null;
  if (base.model === 'seasonal' || base.model === 'ewma') {
    const kinds: Fitted[] = modelPinned ? [base.model] : ['seasonal', 'ewma'];
    const baseline = candidate(base.model, base[base.model].alpha, base, h);
    const all = [baseline, ...kinds.flatMap((k) => grid(k, base, h))];
    baselineLoss = meanLosses(all)[0] ?? null;
    const pick = best(all.slice(1));
    if (pick) {
      loss = pick.loss;
      tuning.model = pick.fit.kind;
      tuning[pick.fit.kind] = { alpha: pick.fit.alpha };
    }
  } else if (base.model === 'ensemble') {
    // Each member forecasts on its own: fit each one's weight separately.
    const members = base.ensemble.members.filter((m: MemberKind): m is Fitted => m !== 'mad');
    for (const kind of members) {
      const pick = best(grid(kind, base, h));
      if (pick) tuning[kind] = { alpha: pick.fit.alpha };
    }
  }
  // A median/MAD model has nothing fitted here (its window stays): only its state is learned.
  const spec = applyTuning(base, tuning);
  const detector = new SeriesDetector(spec);
  for (let i = 0; i < h.values.length; i++) detector.observe(h.values[i] as number, h.times[i] as number);
  return { parameters: { ...tuning, state: detector.snapshot() }, model: spec.model, loss, baselineLoss };
}
