import { FlotillaError } from '../../core/errors.js';

/** What a model expects next: a value and the scale of its usual error (a standard deviation). */
export interface Forecast {
  expected: number;
  scale: number;
}

/**
 * One baseline model of one series. It is asked for a forecast before it learns each value,
 * so the value being scored never influences its own forecast (no look-ahead).
 */
export interface Predictor<State> {
  /** The forecast for a value at `time` (ms), or null while the model has seen too little. */
  forecast(time: number): Forecast | null;
  learn(value: number, time: number): void;
  /** Plain JSON data: restoring it gives a model that forecasts exactly as this one. */
  snapshot(): State;
}

/** A snapshot that does not fit the configured model (e.g. the configuration changed). */
export class AnomalyStateError extends FlotillaError {}

/**
 * The deviation of `value` from a forecast in units of its scale. A model with no spread
 * (a constant series so far) makes any change an extreme deviation rather than a division by 0.
 */
export function deviation(value: number, f: Forecast): number {
  const diff = Math.abs(value - f.expected);
  if (diff === 0) return 0;
  // Below this, a scale is rounding noise of the expected value, not spread of the series.
  const floor = 1e-9 * Math.max(1, Math.abs(f.expected));
  return f.scale > floor ? diff / f.scale : Number.POSITIVE_INFINITY;
}
