import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectOrExplain, serviceUrl } from '../support/services.js';

describe('Redis (ioredis)', () => {
  let redis: Redis;
  const prefix = `it:${process.pid}:${Date.now()}`;

  beforeAll(async () => {
    redis = await connectOrExplain('REDIS_URL', async () => {
      const client = new Redis(serviceUrl('REDIS_URL'), { lazyConnect: true, maxRetriesPerRequest: 1 });
      await client.connect();
      return client;
    });
  });

  afterAll(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  it('sets a value with a TTL and reads it back', async () => {
    await redis.set(`${prefix}:k`, 'v1', 'EX', 60);
    expect(await redis.get(`${prefix}:k`)).toBe('v1');
    const ttl = await redis.ttl(`${prefix}:k`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60);
  });

  it('reads a stream through a consumer group, acks, and leaves unacked entries pending', async () => {
    const stream = `${prefix}:stream`;
    await redis.xgroup('CREATE', stream, 'workers', '0', 'MKSTREAM');
    for (let i = 0; i < 5; i++) await redis.xadd(stream, '*', 'n', String(i));

    const reply = (await redis.xreadgroup('GROUP', 'workers', 'w1', 'COUNT', 10, 'STREAMS', stream, '>')) as
      | [string, [string, string[]][]][]
      | null;
    const entries = reply?.[0]?.[1] ?? [];
    expect(entries.map(([, fields]) => fields[1])).toEqual(['0', '1', '2', '3', '4']);

    // Ack the first three; the last two stay pending for w1 until claimed.
    const acked = await redis.xack(stream, 'workers', ...entries.slice(0, 3).map(([id]) => id));
    expect(acked).toBe(3);
    const pending = (await redis.xpending(stream, 'workers')) as [number, ...unknown[]];
    expect(pending[0]).toBe(2);

    // Another consumer claims what w1 left behind.
    const claimed = (await redis.xautoclaim(stream, 'workers', 'w2', 0, '0')) as [
      string,
      [string, string[]][],
    ];
    expect(claimed[1].map(([, fields]) => fields[1])).toEqual(['3', '4']);
  });
});
