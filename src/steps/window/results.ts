import type { FlotillaRecord, SourceCoordinates } from '../../core/record.js';
import type { AggregateSet, Tally } from './tally.js';

/**
 * Builds result records. A result's id is `<topology>/<step>/<group key JSON>/<start>/<end>`:
 * the same window gives the same id in every run, so sinks upsert on it; with on_update every
 * revision of a window shares its id.
 */
export class ResultBuilder {
  constructor(
    /** `<topology>/<step>/` */
    private readonly idPrefix: string,
    private readonly groupBy: readonly string[],
    private readonly aggregates: AggregateSet,
  ) {}

  id(key: string, start: number, end: number): string {
    return `${this.idPrefix}${key}/${start}/${end}`;
  }

  /** The group key as an object: group-by path → value. */
  private keyObject(key: string): Record<string, unknown> {
    const values = JSON.parse(key) as unknown[];
    const out: Record<string, unknown> = {};
    this.groupBy.forEach((path, i) => {
      out[path] = values[i];
    });
    return out;
  }

  result(key: string, start: number, end: number, t: Tally, revision?: number): FlotillaRecord {
    const value: Record<string, unknown> = {
      window_start: start,
      window_end: end,
      key: this.keyObject(key),
      count: t.count,
    };
    this.aggregates.results(t, value);
    if (revision !== undefined) value.revision = revision;
    return { id: this.id(key, start, end), key, value, timestamp: end, headers: {}, source: t.lastSource };
  }

  /**
   * Retracts a result that no longer exists (a session merged into another or grown past its
   * old bounds, with on_update): value null under the old id, so an upserting sink deletes it.
   */
  tombstone(key: string, start: number, end: number, source: SourceCoordinates): FlotillaRecord {
    return {
      id: this.id(key, start, end),
      key,
      value: null,
      timestamp: end,
      headers: { 'flotilla.tombstone': 'true' },
      source,
    };
  }
}
