import { clickhouseSink } from './clickhouse.js';
import { discardSink } from './discard.js';
import { fileSink } from './file.js';
import { kafkaSink } from './kafka.js';
import { mongodbSink } from './mongodb.js';
import { postgresSink } from './postgres.js';
import { redisSink } from './redis.js';
import { stdoutSink } from './stdout.js';

/** Every sink kind. A new sink is one file plus its entry here. */
export const sinkKinds = [
  kafkaSink,
  stdoutSink,
  fileSink,
  clickhouseSink,
  postgresSink,
  mongodbSink,
  redisSink,
  discardSink,
] as const;
