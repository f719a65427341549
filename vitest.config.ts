import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Integration files share one Kafka broker and one Redis; one file at a time keeps
    // timings honest on a 2-core machine.
    fileParallelism: false,
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // Finds the services (env lines or scripts/services.sh) or fails naming the one missing.
          globalSetup: ['test/support/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
