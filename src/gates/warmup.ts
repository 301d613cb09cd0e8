/**
 * Warm-up: requests sent to the candidate through the preview listener before the gates (JIT,
 * caches, connection pools), so the gates and the first live requests do not measure a cold
 * process. Counted and recorded, never judged.
 */
import { performance } from 'node:perf_hooks';
import { loadUndici } from '../lib/lazy-undici.ts';
import type { WarmupSpec } from '../config/gates.ts';

export const WARMUP_REQUEST_TIMEOUT_MS = 10_000;

export interface WarmupResult {
  requests: number;
  byClass: { '2xx': number; '3xx': number; '4xx': number; '5xx': number; failed: number };
  durationMs: number;
}

export async function runWarmup(spec: WarmupSpec, baseUrl: string, signal: AbortSignal): Promise<WarmupResult> {
  const { Agent, request } = await loadUndici();
  const t0 = performance.now();
  const byClass = { '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0, failed: 0 };
  const agent = new Agent({ connections: spec.connections, keepAliveTimeout: 2_000 });
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < spec.requests; i = next++) {
      if (signal.aborted) return;
      try {
        const res = await request(`${baseUrl}${spec.paths[i % spec.paths.length]}`, { method: spec.method as 'GET', headers: spec.headers, dispatcher: agent, signal, headersTimeout: WARMUP_REQUEST_TIMEOUT_MS, bodyTimeout: WARMUP_REQUEST_TIMEOUT_MS });
        await res.body.dump({ limit: 1 << 22 });
        const s = res.statusCode;
        byClass[s >= 500 ? '5xx' : s >= 400 ? '4xx' : s >= 300 ? '3xx' : '2xx']++;
      } catch {
        if (signal.aborted) return;
        byClass.failed++;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(spec.connections, spec.requests) }, worker));
  } finally {
    await agent.close();
  }
  if (signal.aborted) throw signal.reason;
  const requests = Object.values(byClass).reduce((a, b) => a + b, 0);
  return { requests, byClass, durationMs: performance.now() - t0 };
}
