import { FlowProducer, type Job, Queue, QueueEvents, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectOrExplain, serviceUrl } from '../support/services.js';

describe('BullMQ flows (Redis)', () => {
  const queueName = `it-flow-${process.pid}-${Date.now()}`;
  let connection: Redis;
  let worker: Worker;
  let queue: Queue;
  let events: QueueEvents;
  const order: string[] = [];

  beforeAll(async () => {
    connection = await connectOrExplain('REDIS_URL', async () => {
      // BullMQ requires maxRetriesPerRequest: null on the connections its workers block on.
      const c = new Redis(serviceUrl('REDIS_URL'), { maxRetriesPerRequest: null, lazyConnect: true });
      await c.connect();
      return c;
    });
    queue = new Queue(queueName, { connection });
    events = new QueueEvents(queueName, { connection: connection.duplicate() });
    await events.waitUntilReady();
    worker = new Worker(
      queueName,
      async (job: Job) => {
        order.push(job.name);
        if (job.name === 'load') {
          const children = await job.getChildrenValues<number>();
          return Object.values(children).reduce((a, b) => a + b, 0);
        }
        return (job.data as { rows: number }).rows;
      },
      { connection: connection.duplicate(), concurrency: 2 },
    );
  });

  afterAll(async () => {
    await worker?.close();
    await events?.close();
    await queue?.obliterate({ force: true });
    await queue?.close();
    connection?.disconnect();
  });

  it('runs a parent only after both children and hands it their results', async () => {
    const flows = new FlowProducer({ connection: connection.duplicate() });
    const tree = await flows.add({
      name: 'load',
      queueName,
      data: {},
      children: [
        { name: 'extract-a', queueName, data: { rows: 3 } },
        { name: 'extract-b', queueName, data: { rows: 4 } },
      ],
    });
    const result = await tree.job.waitUntilFinished(events, 30_000);
    await flows.close();

    expect(result).toBe(7);
    expect(order).toHaveLength(3);
    expect(order[2]).toBe('load');
    expect(order.slice(0, 2).sort()).toEqual(['extract-a', 'extract-b']);
  });
});
