/**
 * The oracle of the failure suite: what the chaos topology must produce for the records that
 * are really in the input topic, computed by a batch simulation independent of the worker.
 *
 * The topology is decode → filter (drops `disk_io`) → tumbling window per (tenant, host) →
 * Kafka topic + PostgreSQL. Per input partition, in offset order: undecodable records are dead
 * letters (`decode`); filtered ones vanish; the rest go into their window unless the window is
 * already past end + grace on the partition watermark (highest event time so far), in which case
 * they are dead letters (`late`). A window is closed — and its result must be in every sink —
 * once the watermark reaches end + grace; the offset of the record that got it there is its
 * `closeOffset`, so a committed offset C promises every window with closeOffset < C.
 */

export const WINDOW_MS = 20_000;
export const GRACE_MS = 2_000;

/** A metric record as decoded from the input topic (a subset of the fields is read). */
export interface Metric {
  ts: number;
  tenant: string;
  host: string;
  metric: string;
  value: number;
  unit?: string | null;
}

/** The filter step of the chaos topology, in the topology's expression language and here. */
export const FILTER_EXPR = "value.metric != 'disk_io'";
export const keep = (m: Metric): boolean => m.metric !== 'disk_io';

export interface WindowResult {
  count: number;
  total: number;
  low: number;
  high: number;
  mean: number;
  with_unit: number;
}

export interface ExpectedWindow {
  partition: number;
  /** Offset of the input record whose processing closed the window. */
  closeOffset: number;
  result: WindowResult;
}

export interface InputRecord {
  partition: number;
  offset: number;
  /** The decoded value, or undefined for a record that cannot be decoded (poison). */
  value: Metric | undefined;
}

export interface Oracle {
  /** Closed windows by result id. */
  windows: Map<string, ExpectedWindow>;
  /** Dead letters by `partition/offset`, with their reason. */
  deadLetters: Map<string, 'decode' | 'late'>;
  filtered: number;
  /** Records still in windows that never closed (the end-of-input sentinels). */
  open: number;
}

/** The id the window step gives a result: `<topology>/window/<group key JSON>/<start>/<end>`. */
export function windowId(topology: string, m: Pick<Metric, 'tenant' | 'host'>, start: number): string {
  return `${topology}/window/${JSON.stringify([m.tenant, m.host])}/${start}/${start + WINDOW_MS}`;
}

interface Accumulator {
  id: string;
  end: number;
  count: number;
  total: number;
  low: number;
  high: number;
  withUnit: number;
}

/** Simulates the topology over the input, partition by partition in offset order. */
export function computeOracle(topology: string, input: readonly InputRecord[]): Oracle {
  const windows = new Map<string, ExpectedWindow>();
  const deadLetters = new Map<string, 'decode' | 'late'>();
  let filtered = 0;
  let open = 0;
  const byPartition = new Map<number, InputRecord[]>();
  for (const r of input) {
    const list = byPartition.get(r.partition) ?? [];
    list.push(r);
    byPartition.set(r.partition, list);
  }
  for (const [partition, records] of byPartition) {
    records.sort((a, b) => a.offset - b.offset);
    let watermark = Number.NEGATIVE_INFINITY;
    /** Open windows in order of their end (event time only moves forward, so appends stay sorted). */
    const openWindows = new Map<string, Accumulator>();
    let byEnd: Accumulator[] = [];
    for (const { offset, value } of records) {
      if (value === undefined) {
        deadLetters.set(`${partition}/${offset}`, 'decode');
        continue;
      }
      if (!keep(value)) {
        filtered++;
        continue;
      }
      const start = Math.floor(value.ts / WINDOW_MS) * WINDOW_MS;
      if (start + WINDOW_MS + GRACE_MS <= watermark) {
        deadLetters.set(`${partition}/${offset}`, 'late');
        continue;
      }
      const id = windowId(topology, value, start);
      let acc = openWindows.get(id);
      if (!acc) {
        acc = {
          id,
          end: start + WINDOW_MS,
          count: 0,
          total: 0,
          low: value.value,
          high: value.value,
          withUnit: 0,
        };
        openWindows.set(id, acc);
        byEnd.push(acc);
        if (byEnd.length > 1 && (byEnd.at(-2) as Accumulator).end > acc.end)
          byEnd.sort((a, b) => a.end - b.end);
      }
      acc.count++;
      acc.total += value.value;
      acc.low = Math.min(acc.low, value.value);
      acc.high = Math.max(acc.high, value.value);
      if (value.unit != null) acc.withUnit++;
      watermark = Math.max(watermark, value.ts);
      let closed = 0;
      while (closed < byEnd.length && (byEnd[closed] as Accumulator).end + GRACE_MS <= watermark) {
        const w = byEnd[closed] as Accumulator;
        openWindows.delete(w.id);
        windows.set(w.id, {
          partition,
          closeOffset: offset,
          result: {
            count: w.count,
            total: w.total,
            low: w.low,
            high: w.high,
            mean: w.total / w.count,
            with_unit: w.withUnit,
          },
        });
        closed++;
      }
      if (closed > 0) byEnd = byEnd.slice(closed);
    }
    for (const w of openWindows.values()) open += w.count;
  }
  return { windows, deadLetters, filtered, open };
}

/** Why a sink's result differs from the oracle's, or undefined when it is the same. */
export function resultMismatch(got: Partial<WindowResult>, want: WindowResult): string | undefined {
  const exact = ['count', 'low', 'high', 'with_unit'] as const;
  for (const k of exact) {
    if (Number(got[k]) !== want[k]) return `${k} ${got[k]} ≠ ${want[k]}`;
  }
  // Sums of decimal readings: the step sums exactly, the oracle naively; a lost or doubled record
  // changes the count anyway.
  for (const k of ['total', 'mean'] as const) {
    const g = Number(got[k]);
    if (!(Math.abs(g - want[k]) <= 1e-9 * Math.max(1, Math.abs(want[k])))) return `${k} ${g} ≠ ${want[k]}`;
  }
  return undefined;
}
