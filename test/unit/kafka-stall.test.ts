import { describe, expect, it } from 'vitest';
import { isStalled } from '../../src/sources/kafka.js';

describe('the stall watchdog of the Kafka source', () => {
  const now = 1_000_000;
  const waiting = { inflight: [], acked: 100, highWatermark: 250, lastProgress: now - 61_000 };

  it('flags a partition with records waiting, nothing in flight and no progress for the timeout', () => {
    expect(isStalled(waiting, now, 60_000, false)).toBe(true);
  });

  it.each([
    ['it moved recently', { ...waiting, lastProgress: now - 59_000 }, false],
    ['nothing waits (caught up)', { ...waiting, highWatermark: 100 }, false],
    [
      'a batch is in flight (a sink holds it back)',
      { ...waiting, inflight: [{ next: 200, records: 100, bytes: 1, done: false }] },
      false,
    ],
    ['nothing was consumed yet', { ...waiting, acked: undefined }, false],
    ['it is paused or finished on purpose', waiting, true],
  ])('does not flag a partition when %s', (_why, state, held) => {
    expect(isStalled(state, now, 60_000, held)).toBe(false);
  });
});
