import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ComponentConfigError } from '../core/errors.js';
import { parseAndValidate } from '../topology/validate.js';
import { tenantNameProblem } from './tenant.js';

const tierNameSchema = z
  .string()
  .regex(
    /^[a-z][a-z0-9_-]{0,31}$/,
    'a tier name: lowercase letters, digits, _ and -, starting with a letter',
  );

const tierSchema = z
  .object({
    records_per_second: z
      .number()
      .positive()
      .describe("The tenant's sustained rate: records per second that pass the quota step."),
    burst: z
      .number()
      .min(1)
      .optional()
      .describe(
        'Records a tenant may send at once after being idle (the bucket size; default: one second of rate).',
      ),
  })
  .strict();

/** The tenants file: tiers with their quota, and which tenant is in which tier. */
export const tenantsFileSchema = z
  .object({
    default_tier: tierNameSchema.describe('Tier of every tenant not listed under tenants.'),
    tiers: z
      .record(z.string(), tierSchema)
      .describe('Tier name → its quota, e.g. free: { records_per_second: 100, burst: 200 }.'),
    tenants: z.record(z.string(), tierNameSchema).default({}).describe('Tenant name → tier name.'),
  })
  .strict()
  .superRefine((file, ctx) => {
    const tiers = Object.keys(file.tiers);
    const expected = `expected one of: ${tiers.join(', ')}`;
    for (const tier of tiers) {
      if (!tierNameSchema.safeParse(tier).success) {
        ctx.addIssue({
          code: 'custom',
          path: ['tiers', tier],
          message: `'${tier}' is not a tier name: lowercase letters, digits, _ and -, starting with a letter`,
        });
      }
    }
    if (!(file.default_tier in file.tiers)) {
      ctx.addIssue({
        code: 'custom',
        path: ['default_tier'],
        message: `unknown tier '${file.default_tier}'; ${expected}`,
      });
    }
    for (const [tenant, tier] of Object.entries(file.tenants)) {
      const problem = tenantNameProblem(tenant);
      if (problem) {
        ctx.addIssue({
          code: 'custom',
          path: ['tenants', tenant],
          message: `${JSON.stringify(tenant)} is not a valid tenant name: ${problem}`,
        });
      } else if (!(tier in file.tiers)) {
        ctx.addIssue({
          code: 'custom',
          path: ['tenants', tenant],
          message: `unknown tier '${tier}'; ${expected}`,
        });
      }
    }
  })
  .describe('Flotilla tenants file: quota tiers and the tier of each tenant.');

export type TenantsFile = z.infer<typeof tenantsFileSchema>;

/** A tier's quota as the buckets use it. */
export interface Tier {
  name: string;
  /** Records per second. */
  rate: number;
  /** Bucket size in records. */
  burst: number;
}

/** Which tier a tenant is in. */
export class TenantQuotas {
  private readonly tiers = new Map<string, Tier>();
  private readonly defaultTier: Tier;

  constructor(private readonly file: TenantsFile) {
    for (const [name, t] of Object.entries(file.tiers)) {
      this.tiers.set(name, {
        name,
        rate: t.records_per_second,
        burst: t.burst ?? Math.max(1, t.records_per_second),
      });
    }
    this.defaultTier = this.tiers.get(file.default_tier) as Tier;
  }

  tierOf(tenant: string): Tier {
    const name = Object.hasOwn(this.file.tenants, tenant) ? this.file.tenants[tenant] : undefined;
    return (name !== undefined && this.tiers.get(name)) || this.defaultTier;
  }
}

/**
 * Reads and validates a tenants file. An unreadable file is a ComponentConfigError on the step's
 * `tenants` option; an invalid one a ConfigError naming the tenants file, line and YAML path.
 */
export function loadTenantsFile(file: string, env: NodeJS.ProcessEnv = process.env): TenantQuotas {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ComponentConfigError(
      'tenants',
      `cannot read the tenants file ${file}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  return new TenantQuotas(parseAndValidate(text, file, tenantsFileSchema, env));
}

interface Bucket {
  /** Tokens at `at`; negative while records wait for tokens reserved ahead (delay mode). */
  tokens: number;
  at: number;
}

/** Buckets kept before full (idle) ones are dropped: a full bucket is the same as a new one. */
const SWEEP_ABOVE = 10_000;
const SWEEP_EVERY_MS = 1_000;

/**
 * Token buckets per tenant: `rate` tokens per second up to `burst`; a record takes one. A record
 * may take a token that is not there yet (the bucket goes into debt): it then waits until the
 * token would have been there, and later records of the tenant queue behind it.
 * Deterministic for a given sequence of calls and times (the clock is the caller's).
 */
export class TenantBuckets {
  private readonly buckets = new Map<string, Bucket>();
  private sweptAt = Number.NEGATIVE_INFINITY;

  get size(): number {
    return this.buckets.size;
  }

  /** Refills the tenant's bucket up to `now` (ms) and returns the ms until it holds a token (0: now). */
  waitFor(tenant: string, tier: Tier, now: number): number {
    let bucket = this.buckets.get(tenant);
    if (!bucket) {
      bucket = { tokens: tier.burst, at: now };
      this.buckets.set(tenant, bucket);
    } else {
      refill(bucket, tier, now);
    }
    return bucket.tokens >= 1 ? 0 : ((1 - bucket.tokens) * 1000) / tier.rate;
  }

  /** Takes the token `waitFor` just measured, possibly ahead of time (the bucket goes into debt). */
  take(tenant: string): void {
    const bucket = this.buckets.get(tenant);
    if (bucket) bucket.tokens -= 1;
  }

  /** Drops full buckets when there are many (bounded memory with many tenants), at most once a second. */
  sweep(now: number, tierOf: (tenant: string) => Tier): void {
    if (this.buckets.size <= SWEEP_ABOVE || now - this.sweptAt < SWEEP_EVERY_MS) return;
    this.sweptAt = now;
    for (const [tenant, bucket] of this.buckets) {
      const tier = tierOf(tenant);
      refill(bucket, tier, now);
      if (bucket.tokens >= tier.burst) this.buckets.delete(tenant);
    }
  }
}

function refill(bucket: Bucket, tier: Tier, now: number): void {
  if (now > bucket.at) {
    bucket.tokens = Math.min(tier.burst, bucket.tokens + ((now - bucket.at) * tier.rate) / 1000);
    bucket.at = now;
  }
}
