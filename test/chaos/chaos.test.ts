import { setTimeout as sleep } from 'node:timers/promises';
import type { Admin, Kafka } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AvroCodec, type AvroSchema, SchemaRegistryError } from '../../src/kafka/avro.js';
import { seededRandom } from '../../src/sources/synthetic.js';
import { connectAdmin, testKafka } from '../support/kafka.js';
import { serviceUrl } from '../support/services.js';
import { waitFor } from '../support/wait.js';
import {
  ChaosRun,
  type ChaosWorker,
  ensureServicesUp,
  formatTable,
  metricSchemaV2,
  PARTITIONS,
  type RunOptions,
  type ScenarioReport,
  withServiceDown,
  writeReport,
} from './support.js';

/**
 * The failure suite: a seeded producer writes a known record set into a Kafka topic; workers
 * (`flotilla run`, child processes) decode, filter and window it into a Kafka topic and a
 * PostgreSQL table while faults hit them; a checker then reads every sink and compares it with
 * the oracle (see ChaosRun.check). Each scenario adds a row to the table printed at the end.
 */
describe('failure suite', () => {
  let kafka: Kafka;
  let admin: Admin;
  const reports: ScenarioReport[] = [];

  beforeAll(async () => {
    kafka = testKafka();
    admin = await connectAdmin(kafka);
  });

  afterAll(async () => {
    await ensureServicesUp();
    await admin?.disconnect();
    if (reports.length > 0) {
      console.log(`\nFailure suite\n${formatTable(reports)}\n(written to ${writeReport(reports)})`);
    }
  });

  /**
   * Runs a scenario on its own topics and table, then drains (sentinels close every window),
   * stops the workers with SIGTERM and checks the sinks. The report is kept even when it fails.
   */
  async function runScenario(
    options: RunOptions,
    body: (run: ChaosRun) => Promise<void>,
  ): Promise<ScenarioReport> {
    const run = await ChaosRun.open(kafka, admin, options);
    let report: ScenarioReport | undefined;
    try {
      await body(run);
      await run.sendSentinels();
      await run.waitCommitted(180_000);
      await Promise.all(run.live().map((w) => run.stop(w)));
      report = await run.check();
      reports.push(report);
      for (const note of report.notes) run.log(note);
      for (const problem of report.problems) run.log(`PROBLEM: ${problem}`);
      return report;
    } finally {
      await run.close(report === undefined || report.problems.length > 0);
    }
  }

  const seconds = (ms: number) => (ms / 1000).toFixed(1);

  const expectClean = (report: ScenarioReport) => {
    expect(report.problems).toEqual([]);
    expect(report.lost).toBe(0);
    expect(report.duplicated).toBe(0);
    expect(report.conflicts).toBe(0);
    expect(report.resultsOut).toBe(report.expectedResults);
    expect(report.expectedResults).toBeGreaterThan(1000);
  };

  it('1. kill -9 of a worker at random moments, 15 times in one run', async () => {
    const KILLS = 15;
    const report = await runScenario({ scenario: 'kill9', sessionTimeoutMs: 5000 }, async (run) => {
      const rnd = seededRandom(2026);
      for (const w of [run.startWorker(), run.startWorker()]) await run.waitAssigned(w);
      let producerRunning = true;
      const producing = run.produce(240_000, 2000, 0.002).finally(() => {
        producerRunning = false;
      });
      let killedMidStream = 0;
      for (let k = 1; k <= KILLS; k++) {
        // A worker that holds partitions, after a random while.
        await waitFor(
          'a worker holding partitions',
          () => run.live().some((w) => w.assigned().size > 0),
          60_000,
        );
        const holders = run.live().filter((w) => w.assigned().size > 0);
        const victim = holders[Math.floor(rnd() * holders.length)] as ChaosWorker;
        await sleep(300 + rnd() * 2500);
        if (producerRunning) killedMidStream++;
        await run.kill(victim, `kill ${k} (${victim.label})`);
        await run.snapshot(`after kill ${k}`);
        run.startWorker();
      }
      run.log(`${KILLS} kills done; waiting for the producer`);
      expect(killedMidStream).toBe(KILLS);
      await producing;
    });
    expect(report.faults).toBe(KILLS);
    expect(report.coverageChecks).toBe(KILLS);
    expectClean(report);
  }, 600_000);

  it('2. scale 1 → 3 → 1 workers during the run', async () => {
    const report = await runScenario({ scenario: 'scale' }, async (run) => {
      const first = run.startWorker();
      await run.waitAssigned(first);
      const producing = run.produce(90_000, 2000, 0.002);
      await sleep(10_000);
      await run.snapshot('one worker');
      const more = [run.startWorker(), run.startWorker()];
      run.fault('scale 1 → 3');
      for (const w of more) await run.waitAssigned(w);
      await waitFor(
        'the three workers to share the partitions',
        () => first.assigned().size < PARTITIONS,
        60_000,
      );
      run.log(`3 workers hold ${[first, ...more].map((w) => [...w.assigned()].join(',')).join(' | ')}`);
      await sleep(12_000);
      await run.snapshot('three workers');
      await Promise.all(more.map((w) => run.stop(w)));
      run.fault('scale 3 → 1');
      await waitFor(
        'the first worker to hold every partition again',
        () => first.assigned().size === PARTITIONS,
        60_000,
      );
      await run.snapshot('back to one worker');
      await producing;
    });
    expect(report.faults).toBe(2);
    expectClean(report);
  }, 400_000);

  it('2b. a worker keeps partitions across a rebalance it had no chance to drain for', async () => {
    let skipped = 0;
    // Offsets committed every 20 s: when the second worker joins, the first has handed over and
    // acknowledged everything but committed nothing. It is idle, so KafkaJS's own heartbeat sees
    // the rebalance (no drain, no commit) and resumes the partitions the first worker keeps from
    // the last committed offset: records its windows hold already come again.
    const report = await runScenario({ scenario: 'undrained', commitIntervalMs: 20_000 }, async (run) => {
      const first = run.startWorker();
      await run.waitAssigned(first);
      await run.produce(20_000, 4000, 0.002);
      await sleep(2000);
      const second = run.startWorker();
      run.fault('second worker joins');
      await run.waitAssigned(second);
      await waitFor(
        'the first worker to keep only some partitions',
        () => first.assigned().size < PARTITIONS,
        60_000,
      );
      await run.produce(10_000, 4000, 0.002);
      skipped = first.lines(/delivered again/).length;
      run.notes.push(
        `records delivered again after the rebalance: ${skipped} batches skipped by the first worker`,
      );
    });
    expect(skipped).toBeGreaterThan(0);
    expectClean(report);
  }, 300_000);

  /**
   * Freezes one of two workers (SIGSTOP) past the session timeout; the other takes its partitions
   * over, moves on, and leaves; then the frozen one resumes (SIGCONT) and rejoins alone, so it
   * gets its old partitions back. `busy`: frozen mid-stream, with batches in flight; otherwise
   * frozen idle, after everything so far was committed. Finally a fresh worker joins and the
   * resumed one is SIGKILLed: its partitions' state then comes from the changelog.
   */
  async function frozenWorker(scenario: string, busy: boolean): Promise<ScenarioReport> {
    const SESSION_MS = 6000;
    return await runScenario({ scenario, sessionTimeoutMs: SESSION_MS }, async (run) => {
      // The zombie logs at debug level, where refused commits show ('commit deferred').
      const zombie = run.startWorker({ FLOTILLA_LOG_LEVEL: 'debug' });
      const other = run.startWorker();
      for (const w of [zombie, other]) await run.waitAssigned(w);
      await waitFor(
        'both workers to hold partitions',
        () => zombie.assigned().size > 0 && other.assigned().size > 0,
        60_000,
      );
      const RATE = 2000;
      let producing: Promise<unknown> = Promise.resolve();
      if (busy) {
        producing = run.produce(100_000, RATE, 0.002);
        await sleep(8000);
      } else {
        await run.produce(30_000, RATE, 0.002);
        await run.waitCommitted(60_000);
      }
      const held = [...zombie.assigned()];
      zombie.proc.child.kill('SIGSTOP');
      const frozenAt = Date.now();
      if (!busy) {
        // Once its pending fetch (500 ms long poll) has come back empty: nothing is in flight.
        await sleep(2000);
        producing = run.produce(70_000, RATE, 0.002);
        await sleep(500);
      }
      // Recovery: until the frozen worker's partitions are consumed again (by the other worker).
      run.fault('SIGSTOP');
      await waitFor(
        "the group to give the frozen worker's partitions away",
        () => other.assigned().size === PARTITIONS,
        60_000,
      );
      run.log(
        `frozen worker's partitions ${held} taken over after ${((Date.now() - frozenAt) / 1000).toFixed(1)} s`,
      );
      // The group moves on past where the frozen worker stopped.
      await sleep(6000);
      await run.stop(other);
      await run.snapshot('while frozen');
      const resumedAt = Date.now();
      zombie.proc.child.kill('SIGCONT');
      await waitFor(
        'the resumed worker to rejoin',
        () => zombie.lines(/partitions assigned/).length > 1,
        60_000,
      );
      await sleep(6000);
      await run.snapshot('after the zombie resumed');
      const sinceResume = (re: RegExp) => zombie.lines(re).filter((l) => Number(l.time) >= resumedAt);
      const refused = sinceResume(/commit deferred/).map(
        (l) => (l.err as { type?: string })?.type ?? 'error',
      );
      run.notes.push(
        `zombie held ${held}, frozen ${((resumedAt - frozenAt) / 1000).toFixed(1)} s (session ${SESSION_MS / 1000} s); after SIGCONT: ` +
          `${refused.length} commits refused (${[...new Set(refused)].join(', ') || 'none attempted'}), ` +
          `${sinceResume(/draining/).length} drains, ${sinceResume(/claimed by another worker/).length} checkpoints fenced, rejoined with ${[...zombie.assigned()]}, ` +
          `${sinceResume(/state restored/).length} partition states restored`,
      );
      await run.waitAssigned(run.startWorker());
      await run.kill(zombie, 'kill the resumed worker');
      await producing;
    });
  }

  it('3a. a worker frozen (SIGSTOP) while idle past the session timeout rejoins on resume with fresh state', async () => {
    const report = await frozenWorker('zombie-idle', false);
    expect(report.faults).toBe(2);
    expectClean(report);
  }, 400_000);

  it('3b. a worker frozen (SIGSTOP) mid-stream past the session timeout neither commits nor writes stale results on resume', async () => {
    const report = await frozenWorker('zombie-busy', true);
    expect(report.faults).toBe(2);
    expectClean(report);
  }, 400_000);

  it('4. the Kafka broker restarted mid-run', async () => {
    const report = await runScenario({ scenario: 'broker' }, async (run) => {
      // A backlog, so the workers are busy when the broker goes; the producer waits for it to return.
      await run.produce(150_000, 0, 0.002);
      for (const w of [run.startWorker(), run.startWorker()]) await run.waitAssigned(w);
      await waitFor('the workers mid-way through the backlog', () => run.committedTotal() > 20_000, 120_000);
      await run.snapshot('before the restart');
      run.supervise();
      const outage = await withServiceDown('kafka', 0);
      const timing = `stop ${seconds(outage.stoppedAt - outage.downAt)} s, down until ready ${seconds(outage.upAt - outage.stoppedAt)} s`;
      run.log(`broker restarted: ${timing}`);
      run.notes.push(`broker restarted: ${timing}`);
      run.fault('broker back', outage.upAt);
      // The broker answers before it leads every partition again: produce once every input
      // partition is consumed again (or was done).
      await run.waitResumed(outage.upAt, 120_000);
      await run.produce(30_000, 3000, 0.002);
      await run.snapshot('after the restart');
    });
    expect(report.faults).toBe(1);
    expectClean(report);
  }, 400_000);

  it('5. PostgreSQL unreachable for 60 s mid-run: memory stays bounded, nothing lost', async () => {
    const OUTAGE_MS = 60_000;
    let bounded: { before: number; during: number } | undefined;
    // Through a proxy unless CHAOS_OUTAGE=stop: on a shared machine another engineer's test run
    // starts a stopped PostgreSQL again within seconds (see docs/chaos.md).
    const postgresProxy = process.env.CHAOS_OUTAGE !== 'stop';
    const report = await runScenario({ scenario: 'pg-outage', postgresProxy }, async (run) => {
      const w = run.startWorker();
      await run.waitAssigned(w);
      const producing = run.produce(180_000, 2000, 0.002);
      await sleep(12_000);
      await run.snapshot('before the outage');
      let committedAtStall: number[] = [];
      const outage = await run.cutPostgres(OUTAGE_MS, async () => {
        await sleep(5000);
        committedAtStall = await run.committed();
      });
      const committedAtUp = run.commitSamples.filter((s) => s.at < outage.upAt).at(-1)?.committed ?? [];
      run.fault('postgres back', outage.upAt);
      const lag = (run.commitSamples.at(-1)?.ends ?? []).reduce(
        (a, e, p) => a + e - (committedAtUp[p] ?? 0),
        0,
      );
      bounded = {
        before: run.peakRssMb(0, outage.downAt),
        during: run.peakRssMb(outage.downAt, outage.upAt + 10_000),
      };
      run.notes.push(
        `${outage.what} down ${seconds(outage.upAt - outage.stoppedAt)} s: commits stalled at ${committedAtStall} → ${committedAtUp}; ` +
          `lag when it came back ${lag}; worker RSS peak ${bounded.before} MB before, ${bounded.during} MB during`,
      );
      // Nothing past the sinks is committed while the table cannot be written.
      expect(committedAtUp).toEqual(committedAtStall);
      expect(w.alive()).toBe(true);
      await producing;
      await run.snapshot('after the outage');
    });
    // Bounded: the backlog stays in Kafka, not in the worker (lag above ~100k records at 2000/s).
    expect(bounded?.during).toBeLessThan((bounded?.before ?? 0) + 64);
    expect(report.faults).toBe(1);
    expectClean(report);
  }, 400_000);

  it('6. poison records at a known rate: the dead-letter count equals the injected count', async () => {
    let injected = 0;
    const report = await runScenario({ scenario: 'poison' }, async (run) => {
      const first = run.startWorker();
      await run.waitAssigned(first);
      const producing = run.produce(60_000, 4000, 0.05);
      await sleep(6000);
      // Dead letters re-delivered after a kill are the same records: dedupe by their coordinates.
      await run.kill(first);
      await run.snapshot('after the kill');
      run.startWorker();
      injected = (await producing).poison;
    });
    expect(injected).toBeGreaterThan(2500);
    expect(report.injectedPoison).toBe(injected);
    expect(report.deadLetters).toBe(injected);
    expectClean(report);
  }, 300_000);

  it('7. an Avro schema evolves compatibly mid-run; an incompatible producer is refused by the registry', async () => {
    let refusal: unknown;
    const report = await runScenario({ scenario: 'avro', format: 'avro' }, async (run) => {
      const first = run.startWorker();
      await run.waitAssigned(first);
      await run.produce(30_000, 4000, 0.01);
      const v2Id = await run.registerV2();
      run.log(`registered v2 (optional 'unit') as schema id ${v2Id}`);
      const producing = run.produceV2(30_000, 4000);
      await sleep(3000);
      await run.kill(first, 'kill during the v2 records');
      run.startWorker();
      // A producer with a schema old records cannot be read with (a new required field).
      const v2 = metricSchemaV2();
      const incompatible = { ...v2, fields: [...v2.fields, { name: 'site', type: 'string' }] };
      refusal = await new AvroCodec(serviceUrl('SCHEMA_REGISTRY_URL'))
        .registerSchema(run.subject, incompatible as AvroSchema)
        .then(
          () => undefined,
          (err: unknown) => err,
        );
      const versions = (await (
        await fetch(`${serviceUrl('SCHEMA_REGISTRY_URL')}/subjects/${run.subject}/versions`)
      ).json()) as number[];
      run.notes.push(
        `incompatible schema refused: ${(refusal as Error | undefined)?.message}; subject versions ${JSON.stringify(versions)}`,
      );
      expect(versions).toHaveLength(2);
      await producing;
    });
    // The field added mid-run reached the windows (v2 latency readings carry a unit).
    expect(report.unitResults).toBeGreaterThan(100);
    expect(refusal).toBeInstanceOf(SchemaRegistryError);
    expect((refusal as Error).message).toMatch(/409|incompatible/i);
    expectClean(report);
  }, 300_000);
});
