/** Exponential backoff with full jitter: 100 ms doubling up to `maxMs`. */
export function backoffMs(attempt: number, maxMs = 30_000): number {
  return Math.random() * Math.min(maxMs, 100 * 2 ** attempt);
}

/**
 * Retries `op` until it succeeds or `shouldStop()` holds (then rethrows the last error).
 * Used where giving up would lose data: the caller's partition simply waits. An error that
 * says when to try again (`retryInMs`: an open circuit breaker's cooldown) is retried then,
 * so the write that probes a recovered service is not held back by a long backoff.
 */
export async function retryUntilStopped<T>(
  op: () => Promise<T>,
  shouldStop: () => boolean,
  onError: (err: unknown, attempt: number) => void,
  maxBackoffMs = 30_000,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      onError(err, attempt);
      if (shouldStop()) throw err;
      const hint = (err as { retryInMs?: unknown } | null)?.retryInMs;
      const wait = typeof hint === 'number' ? hint + Math.random() * 100 : backoffMs(attempt, maxBackoffMs);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}
