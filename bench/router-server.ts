/**
 * The Cutover router alone, in its own process, for the benchmark: its RSS can be read from
 * /proc while it is under load, and it does not share an event loop with the bench driver.
 * Controlled over the IPC channel (forked by bench/run.ts):
 *
 *   → { type: 'swap', table: RouteTable }      ← { type: 'swapped', revision, ms }
 *   ← { type: 'ready', port }                  (once listening)
 *
 * Health is a trivial always-healthy view: the benchmark measures the data plane, not checks.
 * `BENCH_ROUTER_WORKERS=N` (N > 1) runs the worker pool (`router.workers: N`) instead of one
 * Router; a swap is answered once every worker acknowledged it.
 */
import type { HealthView } from '../src/health/types.ts';
import type { RouteTable } from '../src/router/route-table.ts';
import { Router } from '../src/router/router.ts';
import { WorkerPool } from '../src/router/workers.ts';

/** Long enough for the longest slow request of the benchmark. */
const DRAIN_TIMEOUT_MS = 10_000;

export type RouterCommand = { type: 'swap'; table: RouteTable };
export type RouterReply = { type: 'ready'; port: number } | { type: 'swapped'; revision: number; ms: number };

const alwaysHealthy: HealthView = {
  isHealthy: () => true,
  reportFailure: () => {},
};

const workers = Number(process.env.BENCH_ROUTER_WORKERS ?? 1);
const opts = { listen: { host: '127.0.0.1', port: 0 }, preview: null, drainTimeoutMs: DRAIN_TIMEOUT_MS, health: alwaysHealthy };
const router = workers > 1 ? new WorkerPool({ ...opts, workers }) : new Router(opts);
await router.start();

const send = (m: RouterReply) => process.send?.(m);

process.on('message', (m: RouterCommand) => {
  if (m.type === 'swap') {
    const t0 = performance.now();
    const { revision } = router.swap(m.table);
    if (router instanceof WorkerPool) void router.applied(revision).then(() => send({ type: 'swapped', revision, ms: performance.now() - t0 }));
    else send({ type: 'swapped', revision, ms: performance.now() - t0 });
  }
});

let closing = false;
const shutdown = () => {
  if (closing) return;
  closing = true;
  router.close().finally(() => process.exit(0));
};
process.on('SIGTERM', shutdown);
process.on('disconnect', shutdown);

send({ type: 'ready', port: router.addresses().live.port });
