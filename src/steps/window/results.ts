import type { FlotillaRecord, SourceCoordinates } from '../../core/record.js';
import { RECENT_KEYS } from './field-path.js';
import type { AggregateSet, Tally } from './tally.js';

/**
 * Builds result records. A result's id is `<topology>/<step>/<group key JSON>/<start>/<end>`:
 * the same window gives the same id in every run, so sinks upsert on it; with on_update every
 * revision of a window shares its id.
 */
export class ResultBuilder {
  /** Group key values of recent results: a key usually emits again, window after window. */
  private readonly parsedKeys = new Map<string, unknown[]>();

  constructor(
    /** `<topology>/<step>/` */
    private readonly idPrefix: string,
    private readonly groupBy: readonly string[],
    private readonly aggregates: AggregateSet,
  ) {}

  id(key: string, start: number, end: number): string {
    return `${this.idPrefix}${key}/${start}/${end}`;
  }

  /** The group key as a new object: group-by path → value. */
  private keyObject(key: string): Record<string, unknown> {
    let values = this.parsedKeys.get(key);
    if (values === undefined) {
      values = JSON.parse(key) as unknown[];
      // Only primitives are shared between results: an object value could be changed downstream.
      if (values.every((v) => v === null || typeof v !== 'object')) {
        if (this.parsedKeys.size >= RECENT_KEYS) this.parsedKeys.clear();
        this.parsedKeys.set(key, values);
      }
    }
    const out: Record<string, unknown> = {};
    for (let i = 0; i < this.groupBy.length; i++) out[this.groupBy[i] as string] = values[i];
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
