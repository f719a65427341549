import { Counter, Gauge } from 'prom-client';
import { registry } from '../../observability/metrics.js';
import type { FieldProfile, QualityProfile } from './profile.js';
import { profiledTypes } from './profile.js';

export const qualityOutcomes = ['passed', 'tagged', 'dead_lettered', 'dropped'] as const;
export type QualityOutcome = (typeof qualityOutcomes)[number];

/** What a live quality step shows at scrape time. */
export interface QualityMetricsSource {
  readonly topology: string;
  readonly step: string;
  profile(): QualityProfile | undefined;
  dedupeKeys(): { rule: string; keys: number }[];
}

const live = new Set<QualityMetricsSource>();

/** Shows a step's profile and dedupe state in the metrics until the returned function is called. */
export function registerQualitySource(source: QualityMetricsSource): () => void {
  live.add(source);
  return () => live.delete(source);
}

const ruleFailures = new Counter({
  name: 'flotilla_quality_rule_failures_total',
  help: 'Records that failed a quality rule.',
  labelNames: ['topology', 'step', 'rule', 'tenant'] as const,
  registers: [registry],
});

const records = new Counter({
  name: 'flotilla_quality_records_total',
  help: 'Records judged by a quality step, by outcome (passed, tagged, dead_lettered, dropped).',
  labelNames: ['topology', 'step', 'tenant', 'outcome'] as const,
  registers: [registry],
});

export const dedupeEvictions = new Counter({
  name: 'flotilla_quality_dedupe_evictions_total',
  help: 'Dedupe keys forgotten before their TTL because a partition reached max_keys.',
  labelNames: ['topology', 'step', 'rule'] as const,
  registers: [registry],
});

new Gauge({
  name: 'flotilla_quality_dedupe_keys',
  help: 'Dedupe keys remembered, over all partitions of this process.',
  labelNames: ['topology', 'step', 'rule'] as const,
  registers: [registry],
  collect() {
    this.reset();
    for (const s of live)
      for (const { rule, keys } of s.dedupeKeys())
        this.set({ topology: s.topology, step: s.step, rule }, keys);
  },
});

new Gauge({
  name: 'flotilla_quality_profiled_records',
  help: 'Records profiled by a quality step since the process started.',
  labelNames: ['topology', 'step'] as const,
  registers: [registry],
  collect() {
    this.reset();
    for (const s of live) {
      const p = s.profile();
      if (p) this.set({ topology: s.topology, step: s.step }, p.records);
    }
  },
});

/** One gauge per field statistic, filled from the live steps' profiles at scrape time. */
function fieldGauge(name: string, help: string, stat: (f: FieldProfile) => number | null): void {
  new Gauge({
    name,
    help,
    labelNames: ['topology', 'step', 'field'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const s of live) {
        for (const [field, f] of Object.entries(s.profile()?.fields ?? {})) {
          const v = stat(f);
          if (v !== null) this.set({ topology: s.topology, step: s.step, field }, v);
        }
      }
    },
  });
}

fieldGauge(
  'flotilla_quality_field_null_ratio',
  'Share of profiled records where the field is missing or null.',
  (f) => f.null_rate,
);
fieldGauge('flotilla_quality_field_min', 'Smallest numeric value of the field.', (f) => f.min);
fieldGauge('flotilla_quality_field_max', 'Largest numeric value of the field.', (f) => f.max);
fieldGauge('flotilla_quality_field_mean', 'Mean of the numeric values of the field.', (f) => f.mean);
fieldGauge(
  'flotilla_quality_field_distinct',
  'Estimated distinct values of the field (HyperLogLog).',
  (f) => f.distinct,
);

new Gauge({
  name: 'flotilla_quality_field_type_ratio',
  help: 'Share of each type among the non-null values of the field.',
  labelNames: ['topology', 'step', 'field', 'type'] as const,
  registers: [registry],
  collect() {
    this.reset();
    for (const s of live) {
      for (const [field, f] of Object.entries(s.profile()?.fields ?? {})) {
        for (const type of profiledTypes) {
          const share = f.types[type];
          if (share !== undefined) this.set({ topology: s.topology, step: s.step, field, type }, share);
        }
      }
    }
  },
});

/**
 * Tenant label values, bounded: the first `max` tenants seen keep their name, later ones are
 * 'other', and a record without a tenant is 'none'.
 */
export class TenantLabels {
  private readonly known = new Set<string>();

  constructor(private readonly max: number) {}

  label(tenant: unknown): string {
    if (tenant === null || tenant === undefined || tenant === '') return 'none';
    if (typeof tenant !== 'string' && typeof tenant !== 'number') return 'other';
    const name = String(tenant);
    if (this.known.has(name)) return name;
    if (this.known.size >= this.max) return 'other';
    this.known.add(name);
    return name;
  }
}

/** Counts of one batch, added to the counters once per batch instead of once per record. */
export class BatchTally {
  private readonly byTenant = new Map<string, { failures: number[]; outcomes: number[] }>();

  constructor(private readonly ruleNames: readonly string[]) {}

  add(tenant: string, outcome: QualityOutcome, failedRules: readonly number[]): void {
    let t = this.byTenant.get(tenant);
    if (!t) {
      t = { failures: new Array(this.ruleNames.length).fill(0), outcomes: qualityOutcomes.map(() => 0) };
      this.byTenant.set(tenant, t);
    }
    (t.outcomes[qualityOutcomes.indexOf(outcome)] as number)++;
    for (const i of failedRules) (t.failures[i] as number)++;
  }

  flush(topology: string, step: string): void {
    for (const [tenant, t] of this.byTenant) {
      t.outcomes.forEach((n, i) => {
        if (n > 0) records.inc({ topology, step, tenant, outcome: qualityOutcomes[i] }, n);
      });
      t.failures.forEach((n, i) => {
        if (n > 0) ruleFailures.inc({ topology, step, rule: this.ruleNames[i], tenant }, n);
      });
    }
  }
}
