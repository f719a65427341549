import { Counter, Histogram } from 'prom-client';
import { registry } from '../observability/metrics.js';
import { TenantLabels } from '../steps/quality/metrics.js';

export const quotaOutcomes = ['passed', 'delayed', 'dead_lettered', 'invalid_tenant'] as const;
export type QuotaOutcome = (typeof quotaOutcomes)[number];

const records = new Counter({
  name: 'flotilla_quota_records_total',
  help: 'Records seen by a quota step, by tenant (bounded: later tenants are other), tier and outcome (passed, delayed, dead_lettered, invalid_tenant).',
  labelNames: ['topology', 'step', 'tenant', 'tier', 'outcome'] as const,
  registers: [registry],
});

const delaySeconds = new Histogram({
  name: 'flotilla_quota_delay_seconds',
  help: 'How long a quota step held a batch for its tenants to get tokens (delay mode; batches that waited).',
  labelNames: ['topology', 'step'] as const,
  buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  registers: [registry],
});

/**
 * The metrics of one quota step. Counts of a batch are kept per label set and added once per
 * batch; tenant labels are bounded by `maxTenantLabels` (later tenants are counted as `other`).
 */
export class QuotaMetrics {
  private readonly tenants: TenantLabels;
  private readonly pending = new Map<
    string,
    { tenant: string; tier: string; outcome: QuotaOutcome; n: number }
  >();

  constructor(
    private readonly topology: string,
    private readonly step: string,
    maxTenantLabels: number,
  ) {
    this.tenants = new TenantLabels(maxTenantLabels);
  }

  count(tenant: string | undefined, tier: string, outcome: QuotaOutcome): void {
    const label = this.tenants.label(tenant);
    const key = `${label}\u0000${tier}\u0000${outcome}`;
    const entry = this.pending.get(key);
    if (entry) entry.n++;
    else this.pending.set(key, { tenant: label, tier, outcome, n: 1 });
  }

  /** Adds the batch's counts to the counters. */
  flush(): void {
    for (const { tenant, tier, outcome, n } of this.pending.values()) {
      records.inc({ topology: this.topology, step: this.step, tenant, tier, outcome }, n);
    }
    this.pending.clear();
  }

  delayed(seconds: number): void {
    delaySeconds.observe({ topology: this.topology, step: this.step }, seconds);
  }
}
