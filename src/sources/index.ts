import { embeddedSource } from './embedded.js';
import { generatorSource } from './generator.js';
import { kafkaSource } from './kafka.js';
import { redisStreamSource } from './redis-stream.js';

/** Every source kind. A new source is one file plus its entry here. */
export const sourceKinds = [kafkaSource, embeddedSource, generatorSource, redisStreamSource] as const;
