import { type Db, MongoClient, MongoServerError } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectOrExplain, serviceUrl } from '../support/services.js';

interface Reading {
  _id: string;
  tenant: string;
  metric: string;
  value: number;
  labels: { host: string };
}

describe('MongoDB wire protocol (mongodb driver)', () => {
  let client: MongoClient;
  let db: Db;
  const dbName = `it_${process.pid}_${Date.now()}`;

  beforeAll(async () => {
    client = await connectOrExplain('MONGO_URL', async () => {
      const c = new MongoClient(serviceUrl('MONGO_URL'), { serverSelectionTimeoutMS: 5000 });
      await c.connect();
      await c.db('admin').command({ ping: 1 });
      return c;
    });
    db = client.db(dbName);
  });

  afterAll(async () => {
    await db?.dropDatabase();
    await client?.close();
  });

  it('inserts, upserts idempotently with bulkWrite, and finds with filters', async () => {
    const readings = db.collection<Reading>('readings');
    const docs: Reading[] = Array.from({ length: 20 }, (_, i) => ({
      _id: `r${i}`,
      tenant: i % 2 ? 'acme' : 'globex',
      metric: i % 4 < 2 ? 'cpu' : 'mem',
      value: i,
      labels: { host: `h${i % 3}` },
    }));
    expect((await readings.insertMany(docs.slice(0, 10))).insertedCount).toBe(10);

    const upserts = docs.map((d) => ({
      replaceOne: { filter: { _id: d._id }, replacement: { ...d, value: d.value * 10 }, upsert: true },
    }));
    const first = await readings.bulkWrite(upserts, { ordered: false });
    expect(first.upsertedCount).toBe(10);
    const again = await readings.bulkWrite(upserts, { ordered: false });
    expect(again.upsertedCount).toBe(0);
    expect(await readings.countDocuments()).toBe(20);

    const found = await readings
      .find({ tenant: 'acme', value: { $gte: 50, $lt: 150 }, 'labels.host': { $in: ['h0', 'h1'] } })
      .sort({ value: -1 })
      .limit(3)
      .toArray();
    const expected = docs
      .map((d) => ({ ...d, value: d.value * 10 }))
      .filter(
        (d) => d.tenant === 'acme' && d.value >= 50 && d.value < 150 && ['h0', 'h1'].includes(d.labels.host),
      )
      .sort((a, b) => b.value - a.value)
      .slice(0, 3);
    expect(found).toEqual(expected);
  });

  it('creates indexes and enforces a unique one', async () => {
    const events = db.collection('events');
    await events.createIndex({ tenant: 1, key: 1 }, { unique: true, name: 'tenant_key' });
    const names = (await events.listIndexes().toArray()).map((i) => i.name);
    expect(names).toContain('tenant_key');
    await events.insertOne({ tenant: 't', key: 'k' });
    const dup = await events.insertOne({ tenant: 't', key: 'k' }).catch((e: unknown) => e);
    expect(dup).toBeInstanceOf(MongoServerError);
    expect((dup as MongoServerError).code).toBe(11000);
  });

  it('keeps databases apart', async () => {
    const other = client.db(`${dbName}_other`);
    try {
      await other.collection<{ _id: string }>('readings').insertOne({ _id: 'x' });
      expect(await db.collection<{ _id: string }>('readings').countDocuments({ _id: 'x' })).toBe(0);
      expect(await other.collection('readings').countDocuments()).toBe(1);
    } finally {
      await other.dropDatabase();
    }
  });
});
