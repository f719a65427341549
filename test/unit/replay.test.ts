import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseTime } from '../../src/cli/replay.js';
import type { FlotillaRecord } from '../../src/core/record.js';
import { defaultReplayGroup, replayConfig } from '../../src/runtime/replay.js';
import { loadTopology } from '../../src/topology/load.js';
import type { SinkConfig } from '../../src/topology/schema.js';

function topology(sinks: string, extra = ''): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-replay-'));
  const file = path.join(dir, 'topology.yaml');
  writeFileSync(
    file,
    `name: shop
source: { kind: kafka, topics: [orders] }
sinks:
${sinks}
${extra}`,
  );
  return file;
}

const record: FlotillaRecord = {
  id: 'orders/0/1',
  key: null,
  value: { tenant: 'acme' },
  timestamp: 0,
  headers: {},
  source: { topic: 'orders', partition: 0, offset: '1' },
};

describe('replay configuration', () => {
  it('names the replay group after the live group and the range, whatever the spelling of the times', () => {
    const from = parseTime('from', '2026-01-01T00:00:00Z');
    expect(parseTime('from', '2026-01-01T01:00:00+01:00')).toBe(from);
    expect(parseTime('from', String(from))).toBe(from);
    expect(defaultReplayGroup('flotilla-shop', from, from + 86_400_000)).toBe(
      'flotilla-shop.replay.20260101T000000Z-20260102T000000Z',
    );
    expect(defaultReplayGroup('g', from + 1, undefined)).toBe('g.replay.20260101T000000_001Z-end');
    expect(() => parseTime('to', 'yesterday')).toThrow(/--to: expected an ISO-8601 time .* got 'yesterday'/);
  });

  it('--into sends every sink, and the dead letters, to its shadow target', () => {
    const file = topology(
      `  - { kind: kafka, topic: shop.orders }
  - { kind: postgres, url: "postgres://x", table: orders }
  - { kind: clickhouse, name: ch, url: "http://x", table: orders }
  - { kind: mongodb, url: "mongodb://x", database: shop, collection: orders }
  - { kind: redis, url: "redis://x", key: "latest:{tenant}" }
  - { kind: redis, name: lane, url: "redis://x", mode: xadd, stream: "orders:{tenant}" }
  - { kind: file, path: out/orders.jsonl }
  - { kind: stdout }`,
    );
    const { config } = loadTopology(file);
    const shadow = replayConfig(config, 'shop.replay', 'v2');
    expect(shadow.group).toBe('shop.replay');
    expect(shadow.dead_letter).toEqual({ topic: 'shop.dlq.v2' });
    const [kafka, pg, ch, mongo, redis, lane, out, stdout] = shadow.sinks as SinkConfig[];
    expect(kafka).toMatchObject({ kind: 'kafka', topic: 'shop.orders.v2' });
    expect(pg).toMatchObject({ kind: 'postgres', table: 'orders_v2', schema: 'public' });
    expect(ch).toMatchObject({ kind: 'clickhouse', table: 'orders_v2' });
    expect(mongo).toMatchObject({ kind: 'mongodb', collection: 'orders_v2', database: 'shop' });
    if (redis?.kind !== 'redis' || lane?.kind !== 'redis') throw new Error('expected redis sinks');
    expect(redis.key?.render(record)).toBe('latest:acme:v2');
    expect(lane.stream?.render(record)).toBe('orders:acme:v2');
    expect(out).toMatchObject({ kind: 'file', path: 'out/orders.v2.jsonl' });
    expect(stdout).toEqual(config.sinks[7]);
    // The live config is untouched.
    expect(config.sinks[0]).toMatchObject({ topic: 'shop.orders' });
    expect(config.group).toBeUndefined();
  });

  it('refuses a suffix that is not a plain word, and a shadow table name past 63 characters', () => {
    const { config } = loadTopology(
      topology(`  - { kind: postgres, url: "postgres://x", table: ${'t'.repeat(61)} }`),
    );
    expect(() => replayConfig(config, 'g', 'a-b')).toThrow(/--into: expected letters, digits and _/);
    expect(() => replayConfig(config, 'g', 'v2')).toThrow(/shadow table '.*_v2' is longer than 63/);
    // Without --into the sinks stay the live ones.
    expect(replayConfig(config, 'g').sinks).toBe(config.sinks);
  });
});
