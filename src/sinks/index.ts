import { fileSink } from './file.js';
import { stdoutSink } from './stdout.js';

/** Every sink kind. A new sink is one file plus its entry here. */
export const sinkKinds = [stdoutSink, fileSink] as const;
