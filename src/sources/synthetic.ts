/** Seeded synthetic records for the example schemas (demo, `flotilla produce`, benchmarks). */

export type Preset = 'metrics' | 'events';

/** mulberry32: small, fast, good enough for synthetic data; the same seed gives the same stream. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TENANTS = ['acme', 'globex', 'initech', 'umbrella'];
const REGIONS = ['eu-west', 'us-east', 'ap-south'];
const METRICS = ['cpu', 'memory', 'disk_io', 'latency_ms'];
const ACTIONS = ['play', 'pause', 'skip', 'like', 'complete'];

export interface MetricRecord {
  ts: number;
  tenant: string;
  host: string;
  region: string;
  metric: string;
  value: number;
}

export interface ListenEvent {
  ts: number;
  tenant: string;
  user: string;
  track: string;
  action: string;
  duration_ms: number;
}

/** Returns a function making the i-th record of a preset; event time advances 10 ms a record. */
export function syntheticRecords(
  preset: Preset,
  seed = 1,
  startTime = Date.UTC(2026, 0, 1),
): (i: number) => { key: string; value: MetricRecord | ListenEvent } {
  const rnd = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  if (preset === 'metrics') {
    return (i) => {
      const host = `host-${Math.floor(rnd() * 20)}`;
      const metric = pick(METRICS);
      const base = metric === 'latency_ms' ? 120 : 50;
      // Rare spikes, so anomaly steps have something to find.
      const spike = rnd() < 0.002 ? base * 4 : 0;
      const value = Math.round((base + 10 * Math.sin(i / 500) + (rnd() - 0.5) * 8 + spike) * 100) / 100;
      const tenant = pick(TENANTS);
      return {
        key: `${tenant}/${host}`,
        value: { ts: startTime + i * 10, tenant, host, region: pick(REGIONS), metric, value },
      };
    };
  }
  return (i) => {
    const tenant = pick(TENANTS);
    const user = `user-${Math.floor(rnd() * 1000)}`;
    return {
      key: `${tenant}/${user}`,
      value: {
        ts: startTime + i * 10,
        tenant,
        user,
        track: `track-${Math.floor(rnd() * 5000)}`,
        action: pick(ACTIONS),
        duration_ms: Math.floor(rnd() * 240_000),
      },
    };
  };
}
