/**
 * Load generation on autocannon, with our own per-request accounting: every response's status
 * and latency (5xx and failed requests included, unlike autocannon's latency histogram, which
 * keeps 2xx only by default). Used by the `load` gate, by synthetic traffic during the bake
 * and by the drill's probes.
 */
import { createRequire } from 'node:module';
import type autocannonType from 'autocannon';

// Loaded on first use (autocannon and its WebAssembly histogram cost memory in every daemon,
// most of which never run a load gate, synthetic traffic or a drill). It is CommonJS: require works.
const require = createRequire(import.meta.url);
let autocannonLib: typeof autocannonType | null = null;
function autocannon(opts: autocannonType.Options, cb: (err: unknown, result: autocannonType.Result) => void): autocannonType.Instance {
  autocannonLib ??= require('autocannon') as typeof autocannonType;
  return autocannonLib(opts, cb);
}
import { performance } from 'node:perf_hooks';
import { quantile } from './types.ts';

export interface LoadOptions {
  url: string;
  connections: number;
  /** Run this long; with `until` set, it is an upper bound. */
  durationMs: number;
  /** Overall requests per second (absent: as fast as possible). */
  rate?: number;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** Extra paths to rotate over (each connection cycles through them). */
  paths?: string[];
  /** Per-request timeout. */
  requestTimeoutMs?: number;
  signal?: AbortSignal;
  /** Called for every response or failed request (drill probes use it to time failures). */
  onResult?: (r: { status: number | null; latencyMs: number; at: number }) => void;
}

export interface LoadSummary {
  requests: number;
  /** Answers by status class, plus failed requests (connection errors, resets, timeouts). */
  byClass: { '2xx': number; '3xx': number; '4xx': number; '5xx': number; failed: number };
  /** (5xx + failed) / requests; 0 when nothing was sent. */
  errorRate: number;
  p50: number;
  p95: number;
  p99: number;
  rps: number;
  durationMs: number;
}

/** Per-request timeout for generated load. */
export const DEFAULT_LOAD_REQUEST_TIMEOUT_S = 10;

export interface LoadRun {
  /** Resolves when the run ends (duration reached, stop() or abort). */
  done: Promise<LoadSummary>;
  /** Stop early; autocannon stops at its next 1 s tick, `done` then resolves. */
  stop(): void;
}

export function startLoad(o: LoadOptions): LoadRun {
  const latencies: number[] = [];
  const byClass = { '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0, failed: 0 };
  const t0 = performance.now();
  const requests = o.paths && o.paths.length > 0
    ? o.paths.map((p) => ({ method: (o.method ?? 'GET') as 'GET', path: p, headers: o.headers, body: o.body }))
    : undefined;
  let finish: (s: LoadSummary) => void = () => undefined;
  let fail: (e: unknown) => void = () => undefined;
  const done = new Promise<LoadSummary>((resolve, reject) => { finish = resolve; fail = reject; });
  const summary = (): LoadSummary => {
    const sorted = Float64Array.from(latencies).sort();
    const n = latencies.length + byClass.failed;
    const durationMs = performance.now() - t0;
    return {
      requests: n, byClass: { ...byClass },
      errorRate: n === 0 ? 0 : (byClass['5xx'] + byClass.failed) / n,
      p50: quantile(sorted, 0.5), p95: quantile(sorted, 0.95), p99: quantile(sorted, 0.99),
      rps: durationMs > 0 ? (n * 1_000) / durationMs : 0, durationMs,
    };
  };
  const instance = autocannon({
    url: o.url,
    connections: o.connections,
    duration: Math.max(1, o.durationMs / 1_000),
    ...(o.rate !== undefined ? { overallRate: Math.max(1, Math.round(o.rate)) } : {}),
    method: (o.method ?? 'GET') as 'GET',
    headers: o.headers,
    body: o.body,
    ...(requests ? { requests } : {}),
    timeout: o.requestTimeoutMs !== undefined ? Math.max(1, Math.ceil(o.requestTimeoutMs / 1_000)) : DEFAULT_LOAD_REQUEST_TIMEOUT_S,
  }, (err) => {
    o.signal?.removeEventListener('abort', onAbort);
    if (err) fail(err);
    else finish(summary());
  });
  // autocannon emits 'response' as (client, statusCode, bytes, responseTimeMs); its typings omit the client.
  instance.on('response', ((_client: unknown, status: number, _bytes: number, latencyMs: number) => {
    const cls = status >= 500 ? '5xx' : status >= 400 ? '4xx' : status >= 300 ? '3xx' : '2xx';
    byClass[cls]++;
    latencies.push(latencyMs);
    o.onResult?.({ status, latencyMs, at: Date.now() });
  }) as never);
  instance.on('reqError', () => {
    byClass.failed++;
    o.onResult?.({ status: null, latencyMs: Number.NaN, at: Date.now() });
  });
  const onAbort = () => instance.stop();
  if (o.signal?.aborted) instance.stop();
  else o.signal?.addEventListener('abort', onAbort, { once: true });
  return { done, stop: () => instance.stop() };
}
