import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import type { ComponentDefinition, Step, StepContext } from '../core/component.js';
import { RecordError } from '../core/errors.js';
import type { FlotillaRecord } from '../core/record.js';
import { durationSchema } from '../util/duration.js';
import { loadTenantsFile, TenantBuckets, type TenantQuotas, type Tier } from './quota.js';
import { QuotaMetrics } from './quota-metrics.js';
import { InvalidTenantError, TenantResolver, tenantFieldSchema } from './tenant.js';

const DEFAULT_MAX_DELAY_MS = 1000;

export const quotaStepSchema = z
  .object({
    kind: z.literal('quota'),
    name: z.string().min(1).optional(),
    tenants: z
      .string()
      .min(1)
      .describe(
        'The tenants file (tiers with records/s quotas, tenants mapped to tiers), relative to the topology.',
      ),
    field: tenantFieldSchema,
    over_quota: z
      .enum(['delay', 'dead_letter'])
      .default('delay')
      .describe(
        "delay: the batch waits until the tenant's tokens are there (at most max_delay; a record that would wait longer is dead-lettered); dead_letter: an over-quota record goes to the dead-letter topic at once. Reason quota either way.",
      ),
    max_delay: durationSchema
      .optional()
      .describe(
        "over_quota delay: the longest a record waits for its tenant's quota, e.g. 500ms (default 1s).",
      ),
    max_tenant_labels: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .default(100)
      .describe('Tenants named in metric labels; later ones are counted as other.'),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.over_quota === 'dead_letter' && c.max_delay !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['max_delay'], message: 'applies to over_quota: delay only' });
    }
  })
  .describe(
    "Enforces each tenant's records/s quota from a tenants file: over-quota records are delayed or dead-lettered (reason quota).",
  );

export type QuotaStepConfig = z.infer<typeof quotaStepSchema>;

/** Time as the quota step sees it: injectable, so tests run on a fake clock. */
export interface QuotaClock {
  /** Milliseconds, monotonic. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemClock: QuotaClock = {
  now: () => performance.now(),
  sleep: (ms) => sleep(ms),
};

/** A record over its tenant's quota; dead-lettered with reason `quota`. */
export class QuotaExceededError extends RecordError {
  constructor(tenant: string, tier: Tier, why: string) {
    super(
      `tenant '${tenant}' is over its quota (tier ${tier.name}: ${tier.rate} records/s, burst ${tier.burst})${why}`,
      'quota',
    );
  }
}

/**
 * Per-tenant token buckets over a batch: each record takes a token of its tenant. In delay mode
 * a record may reserve a token up to max_delay ahead; the batch is then held once, for the
 * longest reservation (one timer per batch, not per record), and passes whole. Buckets are shared
 * by every partition of this worker, so the quota is per worker process.
 */
export class QuotaStep implements Step {
  private readonly resolver: TenantResolver;
  private readonly buckets = new TenantBuckets();
  private readonly maxDelayMs: number;
  private readonly metrics: QuotaMetrics;

  constructor(
    readonly name: string,
    private readonly config: QuotaStepConfig,
    private readonly quotas: TenantQuotas,
    topology: string,
    private readonly clock: QuotaClock = systemClock,
  ) {
    this.resolver = new TenantResolver(config.field);
    this.maxDelayMs = config.over_quota === 'delay' ? (config.max_delay ?? DEFAULT_MAX_DELAY_MS) : 0;
    this.metrics = new QuotaMetrics(topology, name, config.max_tenant_labels);
  }

  process(records: FlotillaRecord[], ctx: StepContext): FlotillaRecord[] | Promise<FlotillaRecord[]> {
    const now = this.clock.now();
    const out: FlotillaRecord[] = [];
    let waitMs = 0;
    for (const record of records) {
      let tenant: string;
      try {
        tenant = this.resolver.tenantOf(record);
      } catch (err) {
        if (!(err instanceof InvalidTenantError)) throw err;
        this.metrics.count(undefined, 'none', 'invalid_tenant');
        ctx.deadLetter(record, err.reason, err);
        continue;
      }
      const tier = this.quotas.tierOf(tenant);
      const wait = this.buckets.waitFor(tenant, tier, now);
      if (wait > this.maxDelayMs) {
        this.metrics.count(tenant, tier.name, 'dead_lettered');
        const error = new QuotaExceededError(tenant, tier, this.overQuotaDetail(wait));
        ctx.deadLetter(record, error.reason, error);
        continue;
      }
      this.buckets.take(tenant);
      this.metrics.count(tenant, tier.name, wait > 0 ? 'delayed' : 'passed');
      if (wait > waitMs) waitMs = wait;
      out.push(record);
    }
    this.metrics.flush();
    this.buckets.sweep(now, (tenant) => this.quotas.tierOf(tenant));
    if (waitMs <= 0) return out;
    this.metrics.delayed(waitMs / 1000);
    return this.clock.sleep(Math.ceil(waitMs)).then(() => out);
  }

  private overQuotaDetail(waitMs: number): string {
    if (this.config.over_quota === 'dead_letter') return '';
    return `: it would wait ${formatMs(waitMs)}, more than max_delay ${formatMs(this.maxDelayMs)}`;
  }
}

function formatMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.ceil(ms)} ms`;
}

export const quotaStep: ComponentDefinition<typeof quotaStepSchema, Step> = {
  kind: 'quota',
  description: quotaStepSchema.description ?? '',
  schema: quotaStepSchema,
  create: (config, ctx) => {
    const name = config.name ?? 'quota';
    const quotas = loadTenantsFile(path.resolve(ctx.baseDir, config.tenants));
    return new QuotaStep(name, config, quotas, ctx.topology);
  },
};
