/**
 * Mann-Whitney U test (Wilcoxon rank-sum) with the normal approximation, tie correction and
 * continuity correction — the test Kayenta (Netflix/Spinnaker canary analysis) uses to compare a
 * canary's metric samples with the baseline's. It compares whole distributions by rank, so a
 * handful of outliers cannot decide a verdict the way a single percentile of a small sample can.
 * Matches scipy.stats.mannwhitneyu(x, y, method='asymptotic', use_continuity=True).
 */

export type Alternative = 'greater' | 'less' | 'two-sided';

export interface MannWhitneyResult {
  /** U statistic of x: the number of (x, y) pairs with x > y, ties counting one half. */
  u: number;
  /** Standardised statistic (continuity-corrected); 0 when every value ties. */
  z: number;
  /** p-value for the alternative (greater: x tends to be larger than y). */
  p: number;
  /** Common-language effect size A12 = U / (n1·n2): P(x > y) + ½·P(x = y). 0.5 = no difference. */
  effect: number;
  n1: number;
  n2: number;
}

export function mannWhitneyU(x: ArrayLike<number>, y: ArrayLike<number>, alternative: Alternative = 'two-sided'): MannWhitneyResult {
  const n1 = x.length;
  const n2 = y.length;
  if (n1 === 0 || n2 === 0) return { u: Number.NaN, z: Number.NaN, p: Number.NaN, effect: Number.NaN, n1, n2 };
  const n = n1 + n2;
  // Pool, sort by value, and rank with average ranks for ties.
  const values = new Float64Array(n);
  const fromX = new Uint8Array(n);
  const order = new Uint32Array(n);
  for (let i = 0; i < n1; i++) values[i] = x[i];
  for (let i = 0; i < n2; i++) values[n1 + i] = y[i];
  for (let i = 0; i < n; i++) { order[i] = i; fromX[i] = i < n1 ? 1 : 0; }
  order.sort((a, b) => values[a] - values[b]);
  let rankSumX = 0;
  let tieTerm = 0; // Σ (t³ − t) over groups of tied values
  for (let i = 0; i < n;) {
    let j = i + 1;
    while (j < n && values[order[j]] === values[order[i]]) j++;
    const avgRank = (i + 1 + j) / 2; // ranks i+1 .. j
    for (let k = i; k < j; k++) if (fromX[order[k]] === 1) rankSumX += avgRank;
    const t = j - i;
    if (t > 1) tieTerm += t * t * t - t;
    i = j;
  }
  const u = rankSumX - (n1 * (n1 + 1)) / 2;
  const mu = (n1 * n2) / 2;
  const sigma = Math.sqrt(((n1 * n2) / 12) * (n + 1 - tieTerm / (n * (n - 1))));
  const effect = u / (n1 * n2);
  if (!(sigma > 0)) return { u, z: 0, p: 1, effect, n1, n2 };
  let z: number;
  let p: number;
  if (alternative === 'greater') {
    z = (u - mu - 0.5) / sigma;
    p = normalSf(z);
  } else if (alternative === 'less') {
    z = (u - mu + 0.5) / sigma;
    p = normalCdf(z);
  } else {
    z = (Math.abs(u - mu) - 0.5) / sigma;
    p = Math.min(1, 2 * normalSf(z));
    z = Math.sign(u - mu) * Math.max(0, z);
  }
  return { u, z, p, effect, n1, n2 };
}

/** P(Z > z) for a standard normal. */
export function normalSf(z: number): number {
  return 0.5 * erfc(z / Math.SQRT2);
}

export function normalCdf(z: number): number {
  return 0.5 * erfc(-z / Math.SQRT2);
}

/**
 * Complementary error function, Chebyshev fit with fractional error below 1.2e-7 everywhere
 * (Numerical Recipes in C, 2nd ed., §6.2 `erfcc`). Enough for p-values compared with 0.001..0.1.
 */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
    + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? r : 2 - r;
}

/** Median of values (mean of the two middle ones for an even count); NaN when empty. */
export function median(values: ArrayLike<number>): number {
  const n = values.length;
  if (n === 0) return Number.NaN;
  const s = Float64Array.from(values as ArrayLike<number>).sort();
  return n % 2 === 1 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}
