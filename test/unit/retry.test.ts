import { describe, expect, it } from 'vitest';
import { backoffMs, retryUntilStopped } from '../../src/runtime/retry.js';

describe('retryUntilStopped', () => {
  it('retries when an error says so (an open circuit), not after its own backoff', async () => {
    let calls = 0;
    const started = performance.now();
    const result = await retryUntilStopped(
      async () => {
        calls++;
        // Attempt 8's own backoff could be up to 25 s.
        if (calls < 3) throw Object.assign(new Error('circuit open'), { retryInMs: 150 });
        return 'written';
      },
      () => false,
      () => undefined,
    );
    const elapsed = performance.now() - started;
    expect(result).toBe('written');
    expect(calls).toBe(3);
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(2000);
  });

  it('rethrows the last error once told to stop, and caps its backoff', async () => {
    let calls = 0;
    await expect(
      retryUntilStopped(
        async () => {
          calls++;
          throw new Error(`down ${calls}`);
        },
        () => calls >= 2,
        () => undefined,
      ),
    ).rejects.toThrow('down 2');
    for (let attempt = 0; attempt < 40; attempt++) expect(backoffMs(attempt, 5000)).toBeLessThanOrEqual(5000);
  });
});
