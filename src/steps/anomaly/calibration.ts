import { AnomalyStateError } from './types.js';

// Deviations are binned on a log scale from 1e-4 to 1e7 (1e7 also stands for "any change of
// a constant series"); 0.2 in ln is ±10% of a deviation, plenty for a tail probability.
const LN_LOW = Math.log(1e-4);
const LN_HIGH = Math.log(1e7);
const BIN_WIDTH = 0.2;
/** Bin 0 holds deviations below 1e-4 (and exact zeros). */
const BINS = Math.ceil((LN_HIGH - LN_LOW) / BIN_WIDTH) + 1;
// The weights of new observations grow instead of old ones decaying (same ratios, O(1) per
// observation); everything is rescaled before the numbers get large.
const RESCALE_AT = 1e100;

export interface CalibrationState {
  /** Observations seen (not decayed): the calibration scores nothing before `warmup` of them. */
  seen: number;
  /** Weight the next observation gets. */
  weight: number;
  total: number;
  bins: number[];
}

/**
 * Turns a model's deviation into a score in [0, 1] from the series' own history of deviations:
 * the score is log p / log p_min, where p is the (exponentially forgetting) fraction of past
 * deviations at least as large and p_min the smallest p the history allows. A deviation larger
 * than any remembered one scores 1; one the series shows every day scores near 0. This is what
 * makes one threshold fit series of any scale and noise level.
 */
export class TailCalibration {
  private readonly growth: number;
  private seen = 0;
  private weight = 1;
  private total = 0;
  private readonly bins = new Float64Array(BINS);

  /**
   * @param memory effective number of past deviations remembered (the decay is 1 − 1/memory).
   * @param warmup deviations to see before scoring anything (scores 0 until then).
   */
  constructor(
    memory: number,
    private readonly warmup: number,
  ) {
    this.growth = 1 / (1 - 1 / memory);
  }

  /** Scores `deviation` against the history, then (if `learn`) adds it to the history. */
  score(deviation: number, learn: boolean): number {
    const position = binPosition(deviation);
    let score = 0;
    if (this.seen >= this.warmup) {
      const bin = Math.floor(position);
      // Deviations at least as large: the bins above, and the upper part of this bin.
      let atLeast = (this.bins[bin] as number) * (1 - (position - bin));
      for (let i = bin + 1; i < BINS; i++) atLeast += this.bins[i] as number;
      const p = (atLeast + this.weight) / (this.total + this.weight);
      const pMin = this.weight / (this.total + this.weight);
      score = Math.min(1, Math.log(p) / Math.log(pMin));
    }
    if (learn) this.learn(position);
    return score;
  }

  private learn(position: number): void {
    const bin = Math.floor(position);
    this.bins[bin] = (this.bins[bin] as number) + this.weight;
    this.total += this.weight;
    this.seen++;
    this.weight *= this.growth;
    if (this.weight > RESCALE_AT) {
      for (let i = 0; i < BINS; i++) this.bins[i] = (this.bins[i] as number) / this.weight;
      this.total /= this.weight;
      this.weight = 1;
    }
  }

  snapshot(): CalibrationState {
    return { seen: this.seen, weight: this.weight, total: this.total, bins: Array.from(this.bins) };
  }

  restore(state: CalibrationState): this {
    if (state.bins.length !== BINS) {
      throw new AnomalyStateError(`calibration state has ${state.bins.length} bins, expected ${BINS}`);
    }
    this.seen = state.seen;
    this.weight = state.weight;
    this.total = state.total;
    this.bins.set(state.bins);
    return this;
  }
}

/** Fractional bin index of a deviation (0 for zero or tiny, the last bin for huge or infinite). */
function binPosition(deviation: number): number {
  if (!(deviation > 0)) return 0;
  const f = (Math.log(deviation) - LN_LOW) / BIN_WIDTH + 1;
  return Math.max(0, Math.min(BINS - 1e-9, f));
}
