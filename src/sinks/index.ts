import { discardSink } from './discard.js';
import { fileSink } from './file.js';
import { kafkaSink } from './kafka.js';
import { stdoutSink } from './stdout.js';

/** Every sink kind. A new sink is one file plus its entry here. */
export const sinkKinds = [kafkaSink, stdoutSink, fileSink, discardSink] as const;
