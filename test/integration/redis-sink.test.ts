import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisSink } from '../../src/sinks/redis.js';
import { connectOrExplain, serviceUrl } from '../support/services.js';
import { createSink, makeRecord } from '../support/sink-subjects.js';
import { waitFor } from '../support/wait.js';

// What the shared conformance suite does not cover (it runs set-as-hash without TTL, and xadd).
describe('redis sink: set as JSON string, hash with TTL, publish', () => {
  let redis: Redis;
  const prefix = `redissink_${process.pid}`;

  beforeAll(async () => {
    redis = await connectOrExplain('REDIS_URL', async () => {
      const r = new Redis(serviceUrl('REDIS_URL'), { lazyConnect: true });
      await r.connect();
      return r;
    });
  });
  afterAll(async () => {
    const keys = await redis.keys(`*${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  it('sets the latest value per key as JSON with the id, with a TTL', async () => {
    const sink = await createSink(redisSink, {
      kind: 'redis',
      url: serviceUrl('REDIS_URL'),
      key: `${prefix}:latest:{tenant}`,
      ttl: 60,
    });
    try {
      await sink.write(
        [
          makeRecord('a/1', { tenant: 'acme', n: 1 }),
          makeRecord('a/2', { tenant: 'acme', n: 2 }),
          makeRecord('g/1', { tenant: 'globex', n: 3 }),
        ],
        { reject: () => expect.unreachable() },
      );
      expect(JSON.parse((await redis.get(`${prefix}:latest:acme`)) ?? 'null')).toEqual({
        id: 'a/2',
        tenant: 'acme',
        n: 2,
      });
      expect(JSON.parse((await redis.get(`${prefix}:latest:globex`)) ?? 'null')).toMatchObject({ n: 3 });
      const ttl = await redis.pttl(`${prefix}:latest:acme`);
      expect(ttl).toBeGreaterThan(50_000);
      expect(ttl).toBeLessThanOrEqual(60_000);
    } finally {
      await sink.close();
    }
  });

  it('sets hashes whose fields merge, with a TTL; refuses a key of another type without touching its TTL', async () => {
    const key = (host: string) => `${prefix}:hash:${host}`;
    await redis.set(key('taken'), 'a string', 'EX', 600);
    const sink = await createSink(redisSink, {
      kind: 'redis',
      url: serviceUrl('REDIS_URL'),
      key: `${prefix}:hash:{host}`,
      as: 'hash',
      ttl: 60,
    });
    try {
      const rejected: string[] = [];
      const reject = {
        reject: (r: { id: string }, err: unknown) => rejected.push(`${r.id}: ${(err as Error).message}`),
      };
      await sink.write([makeRecord('h/1', { host: 'h1', cpu: 1, region: 'eu' })], reject);
      await sink.write(
        [makeRecord('h/2', { host: 'h1', cpu: 2 }), makeRecord('t/1', { host: 'taken', cpu: 3 })],
        reject,
      );
      expect(rejected).toHaveLength(1);
      expect(rejected[0]).toMatch(/^t\/1: .*WRONGTYPE/);
      expect(await redis.hgetall(key('h1'))).toEqual({ id: 'h/2', host: 'h1', cpu: '2', region: 'eu' });
      const ttl = await redis.pttl(key('h1'));
      expect(ttl).toBeGreaterThan(50_000);
      expect(ttl).toBeLessThanOrEqual(60_000);
      expect(await redis.ttl(key('taken'))).toBeGreaterThan(60);
    } finally {
      await sink.close();
    }
  });

  it('publishes each record once: a re-delivered batch is skipped, a changed record is sent again', async () => {
    const channel = `${prefix}:alerts`;
    const subscriber = new Redis(serviceUrl('REDIS_URL'));
    const received: { id: string; n: number }[] = [];
    subscriber.on('message', (_channel, message: string) => received.push(JSON.parse(message)));
    await subscriber.subscribe(channel);
    const sink = await createSink(redisSink, {
      kind: 'redis',
      url: serviceUrl('REDIS_URL'),
      mode: 'publish',
      channel,
    });
    try {
      const batch = [makeRecord('p/1', { n: 1 }), makeRecord('p/2', { n: 2 })];
      const noReject = { reject: () => expect.unreachable() };
      await sink.write(batch, noReject);
      await sink.write(batch, noReject);
      await sink.write([makeRecord('p/1', { n: 10 })], noReject);
      // A marker published last: everything before it has been delivered.
      await sink.write([makeRecord('p/end', { n: -1 })], noReject);
      await waitFor('the marker message', () => received.some((m) => m.id === 'p/end'), 5000);
      expect(received.map((m) => [m.id, m.n])).toEqual([
        ['p/1', 1],
        ['p/2', 2],
        ['p/1', 10],
        ['p/end', -1],
      ]);
    } finally {
      await sink.close();
      subscriber.disconnect();
    }
  });

  it('refuses a record whose key template has no value for it', async () => {
    const sink = await createSink(redisSink, {
      kind: 'redis',
      url: serviceUrl('REDIS_URL'),
      key: `${prefix}:by-host:{host}`,
    });
    try {
      const rejected: string[] = [];
      await sink.write([makeRecord('h/1', { host: 'h1' }), makeRecord('h/2', { cpu: 1 })], {
        reject: (r, err) => rejected.push(`${r.id}: ${(err as Error).message}`),
      });
      expect(rejected).toEqual([`h/2: '{host}' in '${prefix}:by-host:{host}' is null`]);
      expect(await redis.exists(`${prefix}:by-host:h1`)).toBe(1);
    } finally {
      await sink.close();
    }
  });
});
