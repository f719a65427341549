import { describe, expect, it } from 'vitest';
import type { StateEntry } from '../../src/core/component.js';
import { StateFencedError } from '../../src/core/errors.js';
import { KafkaChangelog } from '../../src/kafka/changelog.js';
import { unique, useKafka } from '../support/kafka.js';

const options = { compression: 'lz4', max_request_bytes: 4096 } as const;
const entry = (key: string, value: string | null): StateEntry => ({
  key,
  value: value === null ? null : Buffer.from(value),
});
const asMap = (entries: StateEntry[]) => {
  const latest = new Map<string, string | null>();
  for (const e of entries) latest.set(e.key, e.value?.toString() ?? null);
  return Object.fromEntries(latest);
};

describe('the Kafka changelog', () => {
  const k = useKafka();
  const changelog = (topic: string) => new KafkaChangelog(k.kafka, topic, options, async () => 2);

  it('restores what was written, per partition, with tombstones and writes larger than one request', async () => {
    const topic = unique('changelog-rw');
    const store = changelog(topic);
    try {
      await store.claim(0);
      await store.claim(1);
      const big = Array.from({ length: 300 }, (_, i) => entry(`k${i}`, 'x'.repeat(40)));
      await store.write(0, big);
      await store.write(0, [entry('k1', 'one'), entry('k2', null)]);
      await store.write(1, [entry('other', 'p1')]);
      const restored = asMap(await store.read(0));
      expect(Object.keys(restored)).toHaveLength(300);
      expect(restored.k1).toBe('one');
      expect(restored.k2).toBeNull();
      expect(asMap(await store.read(1))).toEqual({ other: 'p1' });
    } finally {
      await store.close();
    }
  });

  it('restores several partitions at once, each whole', async () => {
    const topic = unique('changelog-parallel');
    const store = changelog(topic);
    try {
      await Promise.all([store.claim(0), store.claim(1)]);
      for (const p of [0, 1]) {
        await store.write(
          p,
          Array.from({ length: 500 }, (_, i) => entry(`p${p}-k${i}`, 'v'.repeat(30))),
        );
      }
      for (let round = 0; round < 3; round++) {
        const [zero, one] = await Promise.all([store.read(0), store.read(1)]);
        expect(Object.keys(asMap(zero))).toHaveLength(500);
        expect(Object.keys(asMap(one))).toHaveLength(500);
        expect(zero.every((e) => e.key.startsWith('p0-'))).toBe(true);
      }
    } finally {
      await store.close();
    }
  });

  it('fences the previous owner: after another worker claims the partition, its writes are refused and never restored', async () => {
    const topic = unique('changelog-fence');
    const zombie = changelog(topic);
    const owner = changelog(topic);
    try {
      await zombie.claim(0);
      await zombie.write(0, [entry('window', 'before')]);
      await owner.claim(0);
      await expect(zombie.write(0, [entry('window', 'stale')])).rejects.toBeInstanceOf(StateFencedError);
      await owner.write(0, [entry('window', 'after')]);
      await expect(zombie.write(0, [entry('window', 'stale again')])).rejects.toBeInstanceOf(
        StateFencedError,
      );
      // A third worker restores the owner's state, not the zombie's.
      const next = changelog(topic);
      try {
        await next.claim(0);
        expect(asMap(await next.read(0))).toEqual({ window: 'after' });
      } finally {
        await next.close();
      }
    } finally {
      await Promise.all([zombie.close(), owner.close()]);
    }
  });

  it('aborts a transaction the previous owner left open, and restores past its markers', async () => {
    const topic = unique('changelog-open');
    const owner = changelog(topic);
    const frozen = k.kafka.producer({
      transactionalId: `${topic}.0`,
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await frozen.connect();
    try {
      await owner.claim(0);
      await owner.write(0, [entry('a', '1')]);
      // A worker that froze mid-checkpoint: its transaction was never committed.
      const txn = await frozen.transaction();
      await txn.send({ topic, messages: [{ key: 'a', value: 'half-written', partition: 0 }] });
      const next = changelog(topic);
      try {
        await next.claim(0);
        expect(asMap(await next.read(0))).toEqual({ a: '1' });
        await expect(txn.commit()).rejects.toThrow();
        await expect(owner.write(0, [entry('a', '2')])).rejects.toBeInstanceOf(StateFencedError);
      } finally {
        await next.close();
      }
    } finally {
      await Promise.all([owner.close(), frozen.disconnect()]);
    }
  });
});
