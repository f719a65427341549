import { AnomalyStateError, type Forecast, type Predictor } from './types.js';

export interface MadParams {
  /** Values in the window the median and MAD are taken over. */
  window: number;
}

export interface MadState {
  /** The window's values, oldest first. */
  values: number[];
}

/** MAD of a normal distribution is 0.6745σ: this makes the MAD a standard deviation. */
const MAD_TO_SIGMA = 1.4826;
/** Fewer values make a median and a MAD too noisy to forecast with. */
const MIN_VALUES = 10;

/**
 * Rolling median and median absolute deviation over the last `window` values: a robust
 * baseline that outliers barely move. State is the window itself (bounded by `window`); a
 * sorted copy makes each update O(window) by insertion and each forecast O(log window + n/2).
 */
export class MadModel implements Predictor<MadState> {
  private values: number[] = [];
  private sorted: number[] = [];

  constructor(private readonly params: MadParams) {}

  forecast(): Forecast | null {
    const n = this.sorted.length;
    if (n < Math.min(MIN_VALUES, this.params.window)) return null;
    const median = medianOfSorted(this.sorted);
    return { expected: median, scale: MAD_TO_SIGMA * this.medianAbsoluteDeviation(median) };
  }

  learn(value: number): void {
    this.values.push(value);
    this.sorted.splice(lowerBound(this.sorted, value), 0, value);
    if (this.values.length > this.params.window) {
      const oldest = this.values.shift() as number;
      this.sorted.splice(lowerBound(this.sorted, oldest), 1);
    }
  }

  /**
   * The median of |x − median| without sorting the deviations: walking outwards from the
   * median through the sorted values visits the deviations in increasing order.
   */
  private medianAbsoluteDeviation(median: number): number {
    const s = this.sorted;
    const n = s.length;
    let below = lowerBound(s, median) - 1;
    let above = below + 1;
    let lowerMiddle = 0;
    let d = 0;
    for (let k = 0; k <= n >> 1; k++) {
      const left = below >= 0 ? median - (s[below] as number) : Number.POSITIVE_INFINITY;
      const right = above < n ? (s[above] as number) - median : Number.POSITIVE_INFINITY;
      lowerMiddle = d;
      if (left <= right) {
        d = left;
        below--;
      } else {
        d = right;
        above++;
      }
    }
    // d is the (n>>1)-th smallest deviation (0-based); for an even n average it with the one before.
    return n % 2 === 1 ? d : (lowerMiddle + d) / 2;
  }

  snapshot(): MadState {
    return { values: [...this.values] };
  }

  restore(state: MadState): this {
    if (state.values.length > this.params.window) {
      throw new AnomalyStateError(
        `MAD state has ${state.values.length} values, window is ${this.params.window}`,
      );
    }
    this.values = [...state.values];
    this.sorted = [...state.values].sort((a, b) => a - b);
    return this;
  }
}

function medianOfSorted(s: number[]): number {
  const n = s.length;
  const mid = n >> 1;
  return n % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** First index whose value is ≥ v in a sorted array. */
function lowerBound(s: number[], v: number): number {
  let lo = 0;
  let hi = s.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((s[mid] as number) < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
