import type { Forecast, Predictor } from './types.js';

export interface EwmaParams {
  /** Weight of the newest value, in (0, 1]: about 2/alpha values are remembered. */
  alpha: number;
}

export interface EwmaState {
  n: number;
  mean: number;
  variance: number;
}

/**
 * Exponentially weighted mean and variance (West's incremental form): expects the recent
 * level, with the recent spread around it as scale. O(1) state; adapts to level shifts.
 */
export class EwmaModel implements Predictor<EwmaState> {
  private state: EwmaState = { n: 0, mean: 0, variance: 0 };

  constructor(private readonly params: EwmaParams) {}

  forecast(): Forecast | null {
    const { n, mean, variance } = this.state;
    return n < 2 ? null : { expected: mean, scale: Math.sqrt(variance) };
  }

  learn(value: number): void {
    const s = this.state;
    const { alpha } = this.params;
    if (s.n === 0) s.mean = value;
    else {
      const diff = value - s.mean;
      s.mean += alpha * diff;
      s.variance = (1 - alpha) * (s.variance + alpha * diff * diff);
    }
    s.n++;
  }

  snapshot(): EwmaState {
    return { ...this.state };
  }

  restore(state: EwmaState): this {
    this.state = { ...state };
    return this;
  }
}
