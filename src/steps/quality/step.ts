import { z } from 'zod';
import type { ComponentContext, Step, StepContext } from '../../core/component.js';
import { FlotillaError, RecordError } from '../../core/errors.js';
import type { FlotillaRecord } from '../../core/record.js';
import { ExpressionRuntimeError, type Scope } from '../../expr/index.js';
import { isPlainObject, typeName } from '../../expr/runtime.js';
import { scopeOf } from '../expression-step.js';
import { DedupeTable, dedupeTableSnapshotSchema } from './dedupe.js';
import type { FieldPath } from './fields.js';
import {
  BatchTally,
  dedupeEvictions,
  type QualityOutcome,
  registerQualitySource,
  TenantLabels,
} from './metrics.js';
import { Profiler, type QualityProfile } from './profile.js';
import {
  type CompiledDedupeRule,
  type CompiledRule,
  compileRules,
  isDedupeRule,
  type RuleOutcome,
  SKIP,
  type Subject,
} from './rules.js';
import type { QualityStepConfig } from './schema.js';

/** What a record learns from the quality step; tagged records carry it in their value. */
export interface QualityVerdict {
  passed: boolean;
  /** Names of the failed rules, in rule order. */
  failed: string[];
  /** Weight of the passed rules over the weight of the rules that applied (1 when none applied). */
  score: number;
}

/** A record failed rules whose action is dead_letter; the message lists each rule and why. */
export class QualityError extends RecordError {
  constructor(
    readonly verdict: QualityVerdict,
    failures: readonly { rule: CompiledRule; problem: string }[],
  ) {
    super(
      `failed quality rules: ${failures.map((f) => `${f.rule.name} (${f.problem})`).join('; ')}`,
      'quality',
    );
  }
}

/** A snapshot of a quality step's state for one partition could not be restored. */
export class QualityStateError extends FlotillaError {}

/** The state of one partition (the dedupe keys of every dedupe rule), as JSON-safe data. */
export const qualitySnapshotSchema = z
  .object({ version: z.literal(1), dedupe: z.record(z.string(), dedupeTableSnapshotSchema) })
  .strict();
export type QualitySnapshot = z.infer<typeof qualitySnapshotSchema>;

interface Judgement {
  verdict: QualityVerdict;
  failures: { rule: CompiledRule; index: number; problem: string }[];
}

export interface QualityStepOptions {
  /** The wall clock freshness and clock skew are measured against (tests pin it). */
  now?: () => number;
}

/**
 * Checks each record against the rules, in order: every rule that applies runs, so a verdict
 * lists all failures. A failing record is dropped if any failed rule says drop, else
 * dead-lettered if any says dead_letter, else tagged and passed on.
 */
export class QualityStep implements Step {
  readonly name: string;
  private readonly rules: CompiledRule[];
  private readonly dedupeRules: CompiledDedupeRule[];
  private readonly ruleNames: string[];
  /** Dedupe tables by `topic/partition`, one per dedupe rule. */
  private readonly partitions = new Map<string, DedupeTable[]>();
  private readonly profiler: Profiler | undefined;
  private readonly tenants: TenantLabels;
  private readonly tenantField: FieldPath;
  private readonly eventTime: FieldPath | undefined;
  private readonly unregister: () => void;
  private readonly now: () => number;
  private readonly profileLog: NodeJS.Timeout | undefined;

  constructor(
    private readonly config: QualityStepConfig,
    private readonly ctx: ComponentContext,
    options: QualityStepOptions = {},
  ) {
    this.name = config.name ?? 'quality';
    this.rules = compileRules(config.rules);
    this.dedupeRules = this.rules.filter(isDedupeRule);
    this.ruleNames = this.rules.map((r) => r.name);
    const { profile } = config;
    this.profiler = profile.enabled ? new Profiler(profile.fields, profile.max_fields) : undefined;
    if (this.profiler && profile.log_every > 0) {
      this.profileLog = setInterval(() => this.logProfile(), profile.log_every);
      this.profileLog.unref();
    }
    this.tenants = new TenantLabels(config.max_tenants);
    this.tenantField = config.tenant_field;
    this.eventTime = config.event_time;
    this.now = options.now ?? Date.now;
    this.unregister = registerQualitySource({
      topology: ctx.topology,
      step: this.name,
      profile: () => this.profile(),
      dedupeKeys: () =>
        this.dedupeRules.map((rule) => ({
          rule: rule.name,
          keys: [...this.partitions.values()].reduce(
            (n, tables) => n + (tables[rule.dedupeSlot]?.size ?? 0),
            0,
          ),
        })),
    });
  }

  process(records: FlotillaRecord[], ctx: StepContext): FlotillaRecord[] {
    const now = this.now();
    const tables = this.tables(ctx.topic, ctx.partition);
    const tally = new BatchTally(this.ruleNames);
    const evicted = new Array<number>(this.dedupeRules.length).fill(0);
    const out: FlotillaRecord[] = [];
    for (const record of records) {
      const value = record.value;
      if (!isPlainObject(value)) {
        ctx.deadLetter(
          record,
          'quality',
          new RecordError(
            `expected an object value to check, found ${typeName(value)} (put a decode step before quality)`,
            'quality',
          ),
        );
        tally.add('none', 'dead_lettered', []);
        continue;
      }
      this.profiler?.observe(value);
      const subject = this.subject(record, value, now, tables);
      const { verdict, failures } = this.judge(subject);
      const outcome = outcomeOf(failures);
      tally.add(
        this.tenants.label(this.tenantField.read(value)),
        outcome,
        failures.map((f) => f.index),
      );
      if (outcome === 'dead_lettered') ctx.deadLetter(record, 'quality', new QualityError(verdict, failures));
      if (outcome !== 'passed' && outcome !== 'tagged') continue;
      for (const { slot, key, time } of subject.pendingKeys) {
        evicted[slot] = (evicted[slot] ?? 0) + (tables[slot] as DedupeTable).remember(key, time);
      }
      out.push(
        outcome === 'tagged' || this.config.tag_all
          ? { ...record, value: { ...value, [this.config.tag_field]: verdict } }
          : record,
      );
    }
    tally.flush(this.ctx.topology, this.name);
    this.countEvictions(evicted);
    return out;
  }

  /** Runs every rule that applies to one record; dedupe keys wait in `subject.pendingKeys`. */
  private judge(subject: Subject): Judgement {
    let applied = 0;
    let passed = 0;
    const failures: Judgement['failures'] = [];
    this.rules.forEach((rule, index) => {
      const outcome = runRule(rule, subject);
      if (outcome === SKIP) return;
      applied += rule.weight;
      if (outcome === null) passed += rule.weight;
      else failures.push({ rule, index, problem: outcome });
    });
    return {
      verdict: {
        passed: failures.length === 0,
        failed: failures.map((f) => f.rule.name),
        score: applied === 0 ? 1 : passed / applied,
      },
      failures,
    };
  }

  /** Running statistics per profiled field, for `flotilla` output; undefined when profiling is off. */
  profile(): QualityProfile | undefined {
    return this.profiler?.profile();
  }

  /** What the stream looks like so far, in the worker's log (`flotilla run`). */
  private logProfile(): void {
    const profile = this.profile();
    if (profile && profile.records > 0) {
      this.ctx.logger.info({ topology: this.ctx.topology, step: this.name, profile }, 'quality profile');
    }
  }

  /** The partition's state, to checkpoint alongside its offsets. */
  snapshot(topic: string, partition: number): QualitySnapshot {
    const tables = this.partitions.get(partitionKey(topic, partition));
    const dedupe: QualitySnapshot['dedupe'] = {};
    for (const rule of this.dedupeRules) {
      const table = tables?.[rule.dedupeSlot];
      if (table) dedupe[rule.name] = table.snapshot();
    }
    return { version: 1, dedupe };
  }

  /**
   * Replaces the partition's state by a snapshot (e.g. on assignment after a restart). State of
   * rules no longer configured is ignored; rules not in the snapshot start empty.
   */
  restore(topic: string, partition: number, snapshot: unknown): void {
    const parsed = qualitySnapshotSchema.safeParse(snapshot);
    if (!parsed.success) {
      throw new QualityStateError(
        `quality step '${this.name}' of topology '${this.ctx.topology}': cannot restore the state of ` +
          `${topic}/${partition}: ${z.prettifyError(parsed.error)}`,
      );
    }
    const tables = this.newTables();
    const evicted = tables.map((table, slot) => {
      const saved = parsed.data.dedupe[this.dedupeRules[slot]?.name ?? ''];
      return saved ? table.restore(saved) : 0;
    });
    const unknown = Object.keys(parsed.data.dedupe).filter(
      (n) => !this.dedupeRules.some((r) => r.name === n),
    );
    if (unknown.length > 0) {
      this.ctx.logger.warn(
        { step: this.name, topic, partition, rules: unknown },
        'ignoring saved dedupe state of rules that are no longer configured',
      );
    }
    this.partitions.set(partitionKey(topic, partition), tables);
    this.countEvictions(evicted);
  }

  /** Forgets a partition's state (e.g. when the partition is revoked). */
  release(topic: string, partition: number): void {
    this.partitions.delete(partitionKey(topic, partition));
  }

  async close(): Promise<void> {
    clearInterval(this.profileLog);
    this.logProfile();
    this.unregister();
  }

  private subject(
    record: FlotillaRecord,
    value: Record<string, unknown>,
    now: number,
    tables: DedupeTable[],
  ): Subject {
    let scope: Scope | undefined;
    return {
      record,
      value,
      eventTimeRaw: this.eventTime ? this.eventTime.read(value) : record.timestamp,
      now,
      scope: () => {
        scope ??= scopeOf(record);
        return scope;
      },
      dedupe: tables,
      pendingKeys: [],
    };
  }

  private tables(topic: string, partition: number): DedupeTable[] {
    const key = partitionKey(topic, partition);
    let tables = this.partitions.get(key);
    if (!tables) {
      tables = this.newTables();
      this.partitions.set(key, tables);
    }
    return tables;
  }

  private newTables(): DedupeTable[] {
    return this.dedupeRules.map((r) => new DedupeTable(r.ttlMs, r.maxKeys));
  }

  private countEvictions(bySlot: readonly number[]): void {
    bySlot.forEach((n, slot) => {
      const rule = this.dedupeRules[slot];
      if (n > 0 && rule)
        dedupeEvictions.inc({ topology: this.ctx.topology, step: this.name, rule: rule.name }, n);
    });
  }
}

function partitionKey(topic: string, partition: number): string {
  return `${topic}/${partition}`;
}

/** A rule's outcome; an expression that fails at runtime (in `when` or `check`) fails the rule. */
function runRule(rule: CompiledRule, subject: Subject): RuleOutcome {
  try {
    if (rule.when && !rule.when.test(subject.scope())) return SKIP;
    return rule.check(subject);
  } catch (err) {
    if (err instanceof ExpressionRuntimeError) return err.message;
    throw err;
  }
}

function outcomeOf(failures: Judgement['failures']): QualityOutcome {
  if (failures.length === 0) return 'passed';
  if (failures.some((f) => f.rule.action === 'drop')) return 'dropped';
  if (failures.some((f) => f.rule.action === 'dead_letter')) return 'dead_lettered';
  return 'tagged';
}
