import { defineConfig } from 'vitest/config';

/**
 * The failure suite (`npm run test:chaos`): real services, workers as child processes, SIGKILLs,
 * a frozen worker, a broker restart and a PostgreSQL outage. Kept out of `npm test` (about 10
 * minutes; it restarts the shared Kafka broker). See docs/chaos.md.
 */
export default defineConfig({
  test: {
    name: 'chaos',
    include: ['test/chaos/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
});
