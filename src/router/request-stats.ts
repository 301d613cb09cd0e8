/**
 * Per-(listener, colour) request statistics: rolling 1 s buckets kept for 15 minutes, each with
 * status-class counts, proxy error counts by kind, a log-scale latency histogram and a bounded
 * reservoir of raw latency samples (for the statistical tests of post-switch analysis).
 *
 * Owns: counting. Must never: allocate per request on the hot path (buckets are allocated once
 * per ring slot and reused), block, log, or know anything about HTTP beyond a status number.
 */
import type { Color } from '../environments/types.ts';

export type ListenerName = 'live' | 'preview';
export type StatusClass = '2xx' | '3xx' | '4xx' | '5xx';
/** Why the proxy itself failed a request (status 502/503/504, or a cut-off response). */
export type ProxyErrorKind = 'connect' | 'timeout' | 'reset' | 'no-healthy';

export const STATS_BUCKET_MS = 1_000;
export const STATS_RETENTION_MS = 15 * 60_000;
/** Raw latency samples kept per 1 s bucket (reservoir sampling beyond that: uniform within the second). */
export const STATS_SAMPLES_PER_BUCKET = 200;
/** Histogram range: 0.1 ms .. 60 s, 20 buckets per decade (each bucket ~12 % wide). */
export const LATENCY_MIN_MS = 0.1;
export const LATENCY_MAX_MS = 60_000;
const BUCKETS_PER_DECADE = 20;
const HIST_SIZE = Math.ceil(Math.log10(LATENCY_MAX_MS / LATENCY_MIN_MS) * BUCKETS_PER_DECADE) + 1;
const SLOTS = STATS_RETENTION_MS / STATS_BUCKET_MS;
const ERROR_KINDS: readonly ProxyErrorKind[] = ['connect', 'timeout', 'reset', 'no-healthy'];
const CLASSES: readonly StatusClass[] = ['2xx', '3xx', '4xx', '5xx'];

export interface StatsSummary {
  requests: number;
  byClass: Record<StatusClass, number>;
  /** Proxy-made failures by kind (these are also counted in byClass['5xx'], except client aborts). */
  errors: Record<ProxyErrorKind, number>;
  /** Share of 5xx among requests; 0 when there were no requests. */
  errorRate: number;
  /** Latency percentiles in ms; NaN when there were no requests (or no latency of them). Exact when
   * every request of the range is in `samples`, else from the histogram (within ~6 %; weighted by
   * what each sample stands for when the data plane samples latencies: `recordLatency`). */
  p50: number;
  p95: number;
  p99: number;
  /** Raw latencies (ms), up to STATS_SAMPLES_PER_BUCKET per second of the range. */
  samples: number[];
}

export interface StatsPoint extends Omit<StatsSummary, 'samples'> {
  /** Start of the step, epoch ms. */
  t: number;
}

class Bucket {
  /** Epoch second this slot currently holds; -1 = never used. */
  sec = -1;
  requests = 0;
  readonly classes = new Uint32Array(4);
  readonly errors = new Uint32Array(4);
  readonly hist = new Uint32Array(HIST_SIZE);
  readonly samples = new Float32Array(STATS_SAMPLES_PER_BUCKET);
  /** Samples offered this second (reservoir sampling, Algorithm R). */
  seen = 0;
  /**
   * Requests the histogram stands for beyond `seen` (recordLatency with weight > 1: a sampled
   * data plane's one record stands for N requests). 0 for the builtin router.
   */
  extraWeight = 0;

  reset(sec: number): void {
    this.sec = sec;
    this.requests = 0;
    this.seen = 0;
    this.extraWeight = 0;
    this.classes.fill(0);
    this.errors.fill(0);
    this.hist.fill(0);
  }
}

/** Keeps `durationMs` in the bucket's raw samples: the first ones as they come, then a uniform reservoir. */
function keepSample(b: Bucket, durationMs: number): void {
  const n = ++b.seen;
  if (n <= STATS_SAMPLES_PER_BUCKET) b.samples[n - 1] = durationMs;
  else {
    const j = Math.floor(Math.random() * n);
    if (j < STATS_SAMPLES_PER_BUCKET) b.samples[j] = durationMs;
  }
}

function histIndex(ms: number): number {
  if (!(ms > LATENCY_MIN_MS)) return 0; // also catches NaN
  const i = Math.floor(Math.log10(ms / LATENCY_MIN_MS) * BUCKETS_PER_DECADE) + 1;
  return i >= HIST_SIZE ? HIST_SIZE - 1 : i;
}

/** Representative value of a histogram bucket: its geometric midpoint. */
function histValue(i: number): number {
  if (i === 0) return LATENCY_MIN_MS;
  return LATENCY_MIN_MS * 10 ** ((i - 0.5) / BUCKETS_PER_DECADE);
}

function classIndex(status: number): number {
  // 1xx (a WebSocket's 101) counts as success: the exchange did what it was asked.
  if (status < 300) return 0;
  if (status < 400) return 1;
  if (status < 500) return 2;
  return 3;
}

function laneIndex(listener: ListenerName, color: Color): number {
  return (listener === 'live' ? 0 : 2) + (color === 'blue' ? 0 : 1);
}

function quantileSorted(sorted: Float64Array | number[], q: number): number {
  if (sorted.length === 0) return NaN;
  // Nearest-rank: the smallest value with at least q of the samples at or below it.
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[rank - 1];
}

function quantileHist(hist: Uint32Array, total: number, q: number): number {
  if (total === 0) return NaN;
  const rank = Math.max(1, Math.ceil(q * total));
  let acc = 0;
  for (let i = 0; i < hist.length; i++) {
    acc += hist[i];
    if (acc >= rank) return histValue(i);
  }
  return histValue(hist.length - 1);
}

export class RequestStats {
  readonly #now: () => number;
  /** 4 lanes (live/preview × blue/green), each a ring of SLOTS buckets allocated lazily. */
  readonly #rings: (Bucket | undefined)[][] = [[], [], [], []];

  constructor(opts: { now?: () => number } = {}) {
    this.#now = opts.now ?? Date.now;
  }

  /**
   * Hot path: one finished request. `atMs`: when it finished, for records that arrive later than
   * that (batched from a router process); default now.
   */
  record(listener: ListenerName, color: Color, status: number, durationMs: number, error?: ProxyErrorKind, atMs?: number): void {
    const b = this.#bucket(listener, color, atMs);
    if (b === null) return; // older than the retention (a late relayed record): never wipe newer data
    b.requests++;
    b.classes[classIndex(status)]++;
    if (error !== undefined) b.errors[ERROR_KINDS.indexOf(error)]++;
    b.hist[histIndex(durationMs)]++;
    keepSample(b, durationMs);
  }

  /**
   * Counts without latencies: `byClass` requests (indexed 2xx, 3xx, 4xx, 5xx) that finished in
   * the second of `atMs` (default now). For a data plane that reads exact counters (HAProxy's
   * `show stat`) and only a sample of latencies (`recordLatency`); never both for one request.
   */
  recordCounts(listener: ListenerName, color: Color, byClass: readonly [number, number, number, number], atMs?: number): void {
    const b = this.#bucket(listener, color, atMs);
    if (b === null) return;
    for (let i = 0; i < 4; i++) {
      b.classes[i] += byClass[i];
      b.requests += byClass[i];
    }
  }

  /**
   * A latency (and proxy error kind) without counting a request: the counts come from
   * `recordCounts`. `weight`: how many requests this one stands for (1 in N sampled: N), so that
   * percentiles over seconds with different sampling stay unbiased.
   */
  recordLatency(listener: ListenerName, color: Color, durationMs: number, error?: ProxyErrorKind, weight = 1, atMs?: number): void {
    const b = this.#bucket(listener, color, atMs);
    if (b === null) return;
    if (error !== undefined) b.errors[ERROR_KINDS.indexOf(error)]++;
    b.hist[histIndex(durationMs)] += weight;
    if (weight > 1) b.extraWeight += weight - 1;
    keepSample(b, durationMs);
  }

  /** The bucket of the second of `atMs` (default now), reset if it held an older second; null when that second is older than the retention. */
  #bucket(listener: ListenerName, color: Color, atMs: number | undefined): Bucket | null {
    const sec = Math.floor((atMs ?? this.#now()) / STATS_BUCKET_MS);
    const ring = this.#rings[laneIndex(listener, color)];
    const slot = sec % SLOTS;
    let b = ring[slot];
    if (b === undefined) {
      b = new Bucket();
      ring[slot] = b;
    }
    if (b.sec > sec) return null;
    if (b.sec !== sec) b.reset(sec);
    return b;
  }

  /** Summary of requests that finished in [fromMs, toMs) (1 s resolution, last 15 minutes only). */
  query(listener: ListenerName, color: Color, fromMs: number, toMs: number): StatsSummary {
    return this.#summarize(listener, color, fromMs, toMs, true) as StatsSummary;
  }

  /** One point per step of [fromMs, toMs), for charts. stepMs is rounded up to whole seconds. */
  series(listener: ListenerName, color: Color, fromMs: number, toMs: number, stepMs: number): StatsPoint[] {
    const step = Math.max(STATS_BUCKET_MS, Math.ceil(stepMs / STATS_BUCKET_MS) * STATS_BUCKET_MS);
    const out: StatsPoint[] = [];
    for (let t = fromMs; t < toMs; t += step) {
      const s = this.#summarize(listener, color, t, Math.min(t + step, toMs), false);
      out.push({ t, ...s });
    }
    return out;
  }

  #summarize(listener: ListenerName, color: Color, fromMs: number, toMs: number, withSamples: boolean): Omit<StatsSummary, 'samples'> & { samples?: number[] } {
    const ring = this.#rings[laneIndex(listener, color)];
    const nowSec = Math.floor(this.#now() / STATS_BUCKET_MS);
    const first = Math.max(Math.floor(fromMs / STATS_BUCKET_MS), nowSec - SLOTS + 1);
    const last = Math.min(Math.ceil(toMs / STATS_BUCKET_MS) - 1, nowSec);
    const classes = [0, 0, 0, 0];
    const errors = [0, 0, 0, 0];
    const hist = new Uint32Array(HIST_SIZE);
    const samples: number[] = [];
    let requests = 0;
    /** Requests the latency figures stand for (= requests, unless latencies are sampled). */
    let timed = 0;
    for (let sec = first; sec <= last; sec++) {
      const b = ring[sec % SLOTS];
      if (b === undefined || b.sec !== sec) continue;
      requests += b.requests;
      timed += b.seen + b.extraWeight;
      for (let i = 0; i < 4; i++) {
        classes[i] += b.classes[i];
        errors[i] += b.errors[i];
      }
      for (let i = 0; i < HIST_SIZE; i++) hist[i] += b.hist[i];
      const kept = Math.min(b.seen, STATS_SAMPLES_PER_BUCKET);
      for (let i = 0; i < kept; i++) samples.push(b.samples[i]);
    }
    let p50: number, p95: number, p99: number;
    if (samples.length === timed) {
      const sorted = Float64Array.from(samples).sort();
      p50 = quantileSorted(sorted, 0.5);
      p95 = quantileSorted(sorted, 0.95);
      p99 = quantileSorted(sorted, 0.99);
    } else {
      p50 = quantileHist(hist, timed, 0.5);
      p95 = quantileHist(hist, timed, 0.95);
      p99 = quantileHist(hist, timed, 0.99);
    }
    const byClass = Object.fromEntries(CLASSES.map((c, i) => [c, classes[i]])) as Record<StatusClass, number>;
    const errs = Object.fromEntries(ERROR_KINDS.map((k, i) => [k, errors[i]])) as Record<ProxyErrorKind, number>;
    const summary = { requests, byClass, errors: errs, errorRate: requests === 0 ? 0 : classes[3] / requests, p50, p95, p99 };
    return withSamples ? { ...summary, samples } : summary;
  }
}
