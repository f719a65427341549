import { AnomalyStateError, type Forecast, type Predictor } from './types.js';

export interface SeasonalParams {
  /** Length of the cycle in ms, e.g. a day. */
  period: number;
  /** Equal slots the cycle is cut into (24 for hour-of-day over a day, 168 for hour-of-week). */
  slots: number;
  /** Weight of the newest value within its slot. */
  alpha: number;
}

export interface SeasonalState {
  count: number[];
  mean: number[];
  variance: number[];
}

/** Values a slot needs before it forecasts. */
const MIN_SLOT_VALUES = 3;

/**
 * A seasonal baseline: an exponentially weighted mean and variance per time slot of a cycle
 * (e.g. per hour of the day, in UTC). A value is compared with what that hour usually looks
 * like, so a daily peak is normal at its hour and anomalous at another.
 */
export class SeasonalModel implements Predictor<SeasonalState> {
  private state: SeasonalState;

  constructor(private readonly params: SeasonalParams) {
    const { slots } = params;
    this.state = {
      count: new Array(slots).fill(0),
      mean: new Array(slots).fill(0),
      variance: new Array(slots).fill(0),
    };
  }

  forecast(time: number): Forecast | null {
    const slot = this.slotOf(time);
    const { count, mean, variance } = this.state;
    if ((count[slot] as number) < MIN_SLOT_VALUES) return null;
    return { expected: mean[slot] as number, scale: Math.sqrt(variance[slot] as number) };
  }

  learn(value: number, time: number): void {
    const slot = this.slotOf(time);
    const { count, mean, variance } = this.state;
    const { alpha } = this.params;
    const n = count[slot] as number;
    if (n === 0) mean[slot] = value;
    else {
      const m = mean[slot] as number;
      const diff = value - m;
      mean[slot] = m + alpha * diff;
      variance[slot] = (1 - alpha) * ((variance[slot] as number) + alpha * diff * diff);
    }
    count[slot] = n + 1;
  }

  private slotOf(time: number): number {
    const { period, slots } = this.params;
    const phase = ((time % period) + period) % period;
    return Math.min(slots - 1, Math.floor((phase * slots) / period));
  }

  snapshot(): SeasonalState {
    const { count, mean, variance } = this.state;
    return { count: [...count], mean: [...mean], variance: [...variance] };
  }

  restore(state: SeasonalState): this {
    const { slots } = this.params;
    if ([state.count, state.mean, state.variance].some((a) => a.length !== slots)) {
      throw new AnomalyStateError(`seasonal state does not have ${slots} slots`);
    }
    this.state = { count: [...state.count], mean: [...state.mean], variance: [...state.variance] };
    return this;
  }
}
