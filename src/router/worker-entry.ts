/**
 * One data-plane thread of the worker pool (`router.workers`, src/router/workers.ts): a complete
 * builtin Router bound with SO_REUSEPORT to the same ports as its siblings. It swaps the tables the
 * pool sends and acknowledges each revision, reads health verdicts from the pool, and sends its
 * finished requests back in batches, so that stats and hooks live in one place (the pool's thread).
 *
 * Owns: the bridge between one Router and the pool. Must never: choose routes, judge health, or
 * post a message per request.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createLogger } from '../lib/logger.ts';
import type { HealthView } from '../health/types.ts';
import { Router, type RouterOptions } from './router.ts';
import type { CapturedRequest, RequestRecord } from './data-plane.ts';
import { captureFromSpec } from './capture-spec.ts';
import type { RouteTable } from './route-table.ts';
import { encodeRecord, RECORD_SLOTS, type FromWorker, type ToWorker, type WorkerInit } from './worker-protocol.ts';

/** Finished requests are sent to the pool at most this often. */
const FLUSH_MS = 50;

const port = parentPort!;
const init = workerData as WorkerInit;
const down = new Set<string>(init.down);
const health: HealthView = {
  isHealthy: (id) => !down.has(id),
  reportFailure: (id, reason) => post({ type: 'failure', id, reason }),
};
let batch: (number | string)[] = [];
let captured: [number, CapturedRequest][] = [];

function record(r: RequestRecord): void {
  if (r.request !== undefined) captured.push([batch.length / RECORD_SLOTS, r.request]);
  encodeRecord(batch, r);
}

function post(m: FromWorker): void {
  port.postMessage(m);
}

const opts: RouterOptions = {
  ...init.options,
  health,
  logger: createLogger({ level: init.logLevel }).child({ worker: init.index }),
  reusePort: true,
  onRequest: init.wantRecords ? record : undefined,
};
const router = new Router(opts);
if (init.capture !== null) router.setCapture(captureFromSpec(init.capture));

const flush = setInterval(() => {
  const stats = { live: router.inFlight('live', 'blue'), liveGreen: router.inFlight('live', 'green'), preview: router.inFlight('preview', 'blue'), previewGreen: router.inFlight('preview', 'green') };
  if (batch.length === 0 && !changed(stats)) return;
  const records = batch;
  const copies = captured;
  batch = [];
  captured = [];
  post({ type: 'records', records, inFlight: [stats.live, stats.liveGreen, stats.preview, stats.previewGreen], rejections: router.rejections(), ...(copies.length > 0 ? { captured: copies } : {}) });
}, FLUSH_MS);
let lastInFlight = '';
function changed(s: object): boolean {
  const k = JSON.stringify(s);
  if (k === lastInFlight) return false;
  lastInFlight = k;
  return true;
}

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'swap': {
      const { revision, drain } = router.swap(m.table as RouteTable);
      post({ type: 'swapped', revision });
      if (drain) void drain.then((report) => post({ type: 'drain', revision, report }));
      break;
    }
    case 'capture':
      router.setCapture(m.spec === null ? null : captureFromSpec(m.spec));
      break;
    case 'health':
      if (m.healthy) down.delete(m.id); else down.add(m.id);
      break;
    case 'reloadTls': {
      let ok = false;
      let error: string | null = null;
      try { ok = router.reloadTls(); } catch (err) { error = (err as Error).message; }
      post({ type: 'tlsReloaded', ok, error });
      break;
    }
    case 'close':
      clearInterval(flush);
      void router.close().then(() => {
        post({ type: 'closed' });
        port.close();
      });
      break;
  }
});

router.swap(init.table as RouteTable);
router.start().then(
  () => post({ type: 'listening', addresses: router.addresses() }),
  (err: Error) => post({ type: 'failed', error: `${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}`.trim() }),
);
