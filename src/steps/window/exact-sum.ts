/**
 * Exact floating-point summation (Shewchuk's algorithm, as in Python's `math.fsum`): the sum
 * is kept as non-overlapping partials, so it is the correctly rounded sum of every value added,
 * whatever their order or how the partial sums were merged. A window built from panes, merged
 * sessions or a restored checkpoint therefore gives the same sum, to the last bit, as a batch
 * GROUP BY. Usually one or two partials; finite inputs whose running sum stays below ±1.8e308.
 */

/** Adds `x` to the partials (in place). */
export function exactAdd(partials: number[], x: number): void {
  let kept = 0;
  for (let j = 0; j < partials.length; j++) {
    let y = partials[j] as number;
    if (Math.abs(x) < Math.abs(y)) {
      const t = x;
      x = y;
      y = t;
    }
    const hi = x + y;
    const lo = y - (hi - x);
    if (lo !== 0) partials[kept++] = lo;
    x = hi;
  }
  // Overwrite and trim rather than truncate and push: the array keeps its storage.
  if (kept < partials.length) {
    partials[kept] = x;
    if (partials.length > kept + 1) partials.length = kept + 1;
  } else partials.push(x);
}

/** Adds every partial of `from` to `into`. */
export function exactMerge(into: number[], from: readonly number[]): void {
  for (const x of from) exactAdd(into, x);
}

/** The correctly rounded value of the partials. */
export function exactValue(partials: readonly number[]): number {
  let n = partials.length;
  if (n === 0) return 0;
  let hi = partials[--n] as number;
  let lo = 0;
  while (n > 0) {
    const x = hi;
    const y = partials[--n] as number;
    hi = x + y;
    lo = y - (hi - x);
    if (lo !== 0) break;
  }
  // Round half to even across the rest: the next partial decides a tie.
  const next = partials[n - 1];
  if (n > 0 && next !== undefined && ((lo < 0 && next < 0) || (lo > 0 && next > 0))) {
    const y = lo * 2;
    const x = hi + y;
    if (y === x - hi) hi = x;
  }
  return hi;
}
