/**
 * Exact per-request accounting of one colour+version on one listener for the length of a bake,
 * fed by the router's request hook. Intervals are cut at any millisecond (the switch is rarely on
 * a second boundary) and only this release's requests count: the router's per-colour 1 s buckets
 * would also hold, in the second of the switch, requests of whatever ran on that colour before
 * (e.g. a release rolled back a moment ago, whose cut-off requests are 502s).
 * Memory: the requests of the interval being filled (older ones are dropped when judged).
 */
import type { RequestRecord } from '../router/data-plane.ts';
import type { StatsSummary } from '../router/request-stats.ts';
import { MAX_TEST_SAMPLES } from './judge.ts';

export type WindowSummary = Pick<StatsSummary, 'requests' | 'errorRate' | 'p50' | 'p95' | 'p99' | 'samples'> & {
  /** How many requests the latency figures (percentiles, samples) are over; < requests while settling. */
  latencyRequests?: number;
};

export class ReleaseRecorder {
  readonly #listener: RequestRecord['listener'];
  readonly #color: RequestRecord['color'];
  readonly #version: string;
  readonly #now: () => number;
  #at: number[] = [];
  #latency: number[] = [];
  #error: boolean[] = [];
  /** Requests each record stands for (RequestRecord.weight: 1 unless the data plane sampled). */
  #weight: number[] = [];

  constructor(o: { listener: RequestRecord['listener']; color: RequestRecord['color']; version: string; now?: () => number }) {
    this.#listener = o.listener;
    this.#color = o.color;
    this.#version = o.version;
    this.#now = o.now ?? Date.now;
  }

  /** Hot path while a bake runs: one comparison, four pushes. */
  observe(r: RequestRecord): void {
    if (r.listener !== this.#listener || r.color !== this.#color || r.version !== this.#version) return;
    this.#at.push(r.at ?? this.#now());
    this.#latency.push(r.durationMs);
    this.#error.push(r.status >= 500);
    this.#weight.push(r.weight ?? 1);
  }

  /**
   * Requests that finished in [from, to); latency only of those that finished at or after
   * `latencyFrom` (the settle time). Drops everything before `to` (intervals are taken in order).
   */
  take(from: number, to: number, latencyFrom = from): WindowSummary {
    let end = 0;
    while (end < this.#at.length && this.#at[end] < to) end++;
    const lat: number[] = [];
    let errors = 0;
    let requests = 0;
    for (let i = 0; i < end; i++) {
      if (this.#at[i] < from) continue;
      requests += this.#weight[i];
      if (this.#error[i]) errors += this.#weight[i];
      if (this.#at[i] >= latencyFrom) lat.push(this.#latency[i]);
    }
    this.#at = this.#at.slice(end);
    this.#latency = this.#latency.slice(end);
    this.#error = this.#error.slice(end);
    this.#weight = this.#weight.slice(end);
    const sorted = Float64Array.from(lat).sort();
    const q = (p: number) => (sorted.length === 0 ? Number.NaN : sorted[Math.max(1, Math.ceil(p * sorted.length)) - 1]);
    return {
      requests, errorRate: requests === 0 ? 0 : errors / requests, latencyRequests: lat.length,
      p50: q(0.5), p95: q(0.95), p99: q(0.99),
      samples: lat.length > MAX_TEST_SAMPLES ? lat.filter((_, i) => i % Math.ceil(lat.length / MAX_TEST_SAMPLES) === 0) : lat,
    };
  }
}
