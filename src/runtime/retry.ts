/** Exponential backoff with full jitter: 100 ms doubling up to `maxMs`. */
export function backoffMs(attempt: number, maxMs = 30_000): number {
  return Math.random() * Math.min(maxMs, 100 * 2 ** attempt);
}

/**
 * Retries `op` until it succeeds or `shouldStop()` holds (then rethrows the last error).
 * Used where giving up would lose data: the caller's partition simply waits.
 */
export async function retryUntilStopped<T>(
  op: () => Promise<T>,
  shouldStop: () => boolean,
  onError: (err: unknown, attempt: number) => void,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      onError(err, attempt);
      if (shouldStop()) throw err;
      await new Promise((r) => setTimeout(r, backoffMs(attempt)));
    }
  }
}
