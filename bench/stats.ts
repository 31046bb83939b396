/**
 * Summary statistics for benchmark samples (pure).
 *
 * @module
 */

/** p50/p95/p99 and friends of a set of samples, in the samples' unit. */
export interface Summary {
  n: number;
  min: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

/**
 * The `q`-quantile (0..1) of sorted samples, nearest-rank method: the
 * smallest sample such that at least `q` of all samples are ≤ it.
 */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  // 1 <= rank' <= length, so the index is in range.
  return sorted[Math.min(sorted.length, rank) - 1]!;
}

/** Summarises samples; every field is NaN when there are none. */
export function summarise(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = sorted.reduce((s, x) => s + x, 0) / sorted.length;
  return {
    n: sorted.length,
    min: sorted[0] ?? NaN,
    p50: quantile(sorted, 0.5),
    p95: quantile(sorted, 0.95),
    p99: quantile(sorted, 0.99),
    max: sorted[sorted.length - 1] ?? NaN,
    mean,
  };
}

/** Rounds for reports: 1 decimal below 100, whole numbers above. */
export function round(x: number): number {
  if (!Number.isFinite(x)) return x;
  return Math.abs(x) >= 100 ? Math.round(x) : Math.round(x * 10) / 10;
}

/** A summary with every figure rounded by {@linkcode round}. */
export function rounded(s: Summary): Summary {
  return {
    n: s.n,
    min: round(s.min),
    p50: round(s.p50),
    p95: round(s.p95),
    p99: round(s.p99),
    max: round(s.max),
    mean: round(s.mean),
  };
}

/** Milliseconds since the Unix epoch with sub-millisecond resolution (comparable across processes). */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}
