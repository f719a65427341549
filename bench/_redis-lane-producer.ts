/**
 * The producer of bench/redis-lane.ts, in a process of its own (its work does not run on the
 * worker's event loop): XADDs records at a steady rate for a number of seconds, each carrying
 * its send time, then prints `{"sent": N, "seconds": S, "cpu": share of a core}`.
 *
 *   node --import tsx bench/_redis-lane-producer.ts --url URL --stream KEY --rate N --seconds S
 */
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: 'redis://127.0.0.1:6379' },
    stream: { type: 'string' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '10' },
  },
});
const stream = values.stream;
if (!stream) throw new Error('--stream is required');
const rate = Number(values.rate);
const total = Math.round(rate * Number(values.seconds));

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
const now = () => performance.timeOrigin + performance.now();

const redis = new Redis(values.url, { lazyConnect: true });
await redis.connect();

let sent = 0;
let failure: unknown;
const start = performance.now();
await new Promise<void>((resolve) => {
  // Every millisecond, the records due by now: at most one tick of delay, no bursts.
  const tick = () => {
    const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000)) - sent;
    if (due > 0) {
      const pipeline = redis.pipeline();
      for (let i = 0; i < due; i++) {
        const n = sent + i;
        const value = `{"sent":${now()},"n":${n},"tenant":"t${n % 4}","host":"host-${n % 20}","metric":"cpu","value":${(n % 1000) / 10}}`;
        pipeline.xadd(stream, '*', 'key', `host-${n % 20}`, 'value', value);
      }
      sent += due;
      pipeline.exec().catch((err: unknown) => {
        failure ??= err;
      });
    }
    if (sent >= total || failure) resolve();
    else setTimeout(tick, 1);
  };
  tick();
});
await redis.quit();
if (failure) throw failure;
const seconds = (performance.now() - start) / 1000;
const cpu = process.cpuUsage();
// CPU of the producer as a share of one core: on a shared machine, part of the load picture.
process.stdout.write(`${JSON.stringify({ sent, seconds, cpu: (cpu.user + cpu.system) / 1e6 / seconds })}\n`);
