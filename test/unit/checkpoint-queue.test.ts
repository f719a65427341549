import { describe, expect, it } from 'vitest';
import { CheckpointQueue } from '../../src/runtime/checkpoint-queue.js';

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('CheckpointQueue', () => {
  it('writes in enqueue order even when later values are ready first', async () => {
    const writes: number[][] = [];
    const q = new CheckpointQueue<number>(async (values) => {
      writes.push(values);
    });
    const first = deferred<number>();
    const done = [q.enqueue(first.promise), q.enqueue(Promise.resolve(2)), q.enqueue(Promise.resolve(3))];
    await tick();
    expect(writes).toEqual([]);
    first.resolve(1);
    await Promise.all(done);
    expect(writes.flat()).toEqual([1, 2, 3]);
  });

  it('groups what becomes ready during a write into the next write', async () => {
    const writes: number[][] = [];
    const gates: ReturnType<typeof deferred<void>>[] = [];
    const q = new CheckpointQueue<number>((values) => {
      writes.push(values);
      const gate = deferred<void>();
      gates.push(gate);
      return gate.promise;
    });
    const done = [q.enqueue(Promise.resolve(1))];
    await tick();
    for (let i = 2; i <= 5; i++) done.push(q.enqueue(Promise.resolve(i)));
    await tick();
    expect(writes).toEqual([[1]]);
    gates[0]?.resolve();
    await tick();
    expect(writes).toEqual([[1], [2, 3, 4, 5]]);
    gates[1]?.resolve();
    await Promise.all(done);
  });

  it('writes nothing enqueued after a batch that failed, nor after a failed write', async () => {
    const writes: number[][] = [];
    let failNext = false;
    const q = new CheckpointQueue<number>(async (values) => {
      if (failNext) throw new Error('fenced');
      writes.push(values);
    });
    await q.enqueue(Promise.resolve(1));
    const failed = q.enqueue(Promise.reject(new Error('sink gave up')));
    const after = q.enqueue(Promise.resolve(3));
    await expect(failed).rejects.toThrow('sink gave up');
    await expect(after).rejects.toThrow('sink gave up');
    expect(writes).toEqual([[1]]);

    const other = new CheckpointQueue<number>(async (values) => {
      if (failNext) throw new Error('fenced');
      writes.push(values);
    });
    failNext = true;
    await expect(other.enqueue(Promise.resolve(4))).rejects.toThrow('fenced');
    failNext = false;
    await expect(other.enqueue(Promise.resolve(5))).rejects.toThrow('fenced');
    expect(writes).toEqual([[1]]);
  });
});
