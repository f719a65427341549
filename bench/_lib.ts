/** Shared pieces of the benchmarks: medians, peak memory, the closing JSON line. */

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Samples RSS and heap every 50 ms while `run` runs; returns its result and the peaks in MiB. */
export async function withPeakMemory<T>(
  run: () => Promise<T>,
): Promise<{ result: T; peakRssMiB: number; peakHeapMiB: number }> {
  let rss = 0;
  let heap = 0;
  const sample = () => {
    const m = process.memoryUsage();
    rss = Math.max(rss, m.rss);
    heap = Math.max(heap, m.heapUsed);
  };
  const timer = setInterval(sample, 50);
  try {
    const result = await run();
    sample();
    return { result, peakRssMiB: rss / 2 ** 20, peakHeapMiB: heap / 2 ** 20 };
  } finally {
    clearInterval(timer);
  }
}

/** Progress on stderr, so stdout carries only the figures. */
export const note = (text: string) => process.stderr.write(`${text}\n`);

/** The last line of every benchmark: one JSON object of figures. */
export function printFigures(figures: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(figures)}\n`);
}

export const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;
