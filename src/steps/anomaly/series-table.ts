import type { SeriesDetector, SeriesState } from './detector.js';
import { AnomalyStateError } from './types.js';

/** The state of every series of one partition, as JSON data. */
export interface PartitionState {
  version: 1;
  /** [series key, state], least recently seen first. */
  series: [string, SeriesState][];
}

/**
 * The detectors of one partition's series, at most `maxSeries` of them: seeing a series makes
 * it the most recent, and a new series beyond the limit evicts the least recently seen one
 * (its state is lost; it cold-starts if it comes back). A Map keeps insertion order, so
 * re-inserting on access makes it an LRU list.
 */
export class SeriesTable {
  private readonly detectors = new Map<string, SeriesDetector>();

  constructor(
    private readonly maxSeries: number,
    /** A detector for a series: new, or restored from `state`. */
    private readonly create: (key: string, state?: SeriesState) => SeriesDetector,
    private readonly onEvict: () => void,
  ) {}

  get size(): number {
    return this.detectors.size;
  }

  /** The detector of `key`, created if the series is new. */
  get(key: string): SeriesDetector {
    let detector = this.detectors.get(key);
    if (detector) this.detectors.delete(key);
    else {
      detector = this.create(key);
      this.evictBeyond(this.maxSeries - 1);
    }
    this.detectors.set(key, detector);
    return detector;
  }

  /** Rebuilds a series' detector if it is held (its parameters changed); keeps its recency. */
  rebuild(key: string): void {
    if (this.detectors.has(key)) this.detectors.set(key, this.create(key));
  }

  snapshot(): PartitionState {
    return { version: 1, series: [...this.detectors].map(([key, d]) => [key, d.snapshot()]) };
  }

  /**
   * Replaces the whole table by a snapshot (the most recent `maxSeries` series of it). A series
   * whose saved state does not fit its model (the configuration changed) starts afresh, as an
   * evicted one would; those are returned with the reason.
   */
  restore(state: PartitionState): { key: string; error: AnomalyStateError }[] {
    this.detectors.clear();
    const misfits: { key: string; error: AnomalyStateError }[] = [];
    for (const [key, s] of state.series.slice(-this.maxSeries)) {
      let detector: SeriesDetector;
      try {
        detector = this.create(key, s);
      } catch (error) {
        if (!(error instanceof AnomalyStateError)) throw error;
        misfits.push({ key, error });
        detector = this.create(key);
      }
      this.detectors.set(key, detector);
    }
    return misfits;
  }

  private evictBeyond(limit: number): void {
    for (const key of this.detectors.keys()) {
      if (this.detectors.size <= limit) return;
      this.detectors.delete(key);
      this.onEvict();
    }
  }
}
