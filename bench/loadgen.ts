/**
 * The switch-under-load client, in its own process (forked by bench/run.ts) so the driver's
 * event loop stays free to time switches. Steady keep-alive GETs on `/` from N connections plus
 * slow requests (`/slow?ms=…`) from M more, each outcome counted: connection errors, timeouts,
 * non-2xx answers and answers that are not a colour are all failures. No request is retried
 * (undici retries nothing unless told to), so a race with a closing keep-alive connection shows.
 *
 *   → { type: 'start', ...LoadSpec }   ← { type: 'started' }
 *   → { type: 'stop' }                 ← { type: 'result', ...LoadResult }  (after in-flight requests end)
 */
import { Pool } from 'undici';

export interface LoadSpec {
  origin: string;
  connections: number;
  slowConnections: number;
  slowMs: number;
  /** Per-request limit for headers and body; a slower answer is a failure ('timeout'). */
  timeoutMs: number;
}

export interface Failure {
  /** Epoch ms (performance.timeOrigin + now) when the failure was seen. */
  t: number;
  kind: string;
  slow: boolean;
}

export interface LoadResult {
  requests: number;
  ok: number;
  failed: number;
  byKind: Record<string, number>;
  /** The first MAX_FAILURES_KEPT failures with their time, to attribute them to switches. */
  failures: Failure[];
  colours: Record<string, number>;
  slow: { requests: number; ok: number; spans: [number, number][] };
  startedAt: number;
  endedAt: number;
}

export type LoadCommand = ({ type: 'start' } & LoadSpec) | { type: 'stop' };
export type LoadReply = { type: 'started' } | ({ type: 'result' } & LoadResult);

const MAX_FAILURES_KEPT = 10_000;
const now = () => performance.timeOrigin + performance.now();

function failureKind(err: unknown): string {
  const e = err as { code?: string; name?: string; message?: string };
  if (e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT') return 'timeout';
  if (e.code === 'UND_ERR_SOCKET') return 'socket closed';
  return e.code ?? e.name ?? 'error';
}

async function runLoad(spec: LoadSpec, stopped: () => boolean): Promise<LoadResult> {
  const common = { pipelining: 1, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000, headersTimeout: spec.timeoutMs, bodyTimeout: spec.timeoutMs };
  const fast = new Pool(spec.origin, { ...common, connections: spec.connections });
  const slow = new Pool(spec.origin, { ...common, connections: Math.max(1, spec.slowConnections) });
  const r: LoadResult = {
    requests: 0, ok: 0, failed: 0, byKind: {}, failures: [], colours: {},
    slow: { requests: 0, ok: 0, spans: [] }, startedAt: now(), endedAt: 0,
  };
  const fail = (kind: string, isSlow: boolean) => {
    r.failed++;
    r.byKind[kind] = (r.byKind[kind] ?? 0) + 1;
    if (r.failures.length < MAX_FAILURES_KEPT) r.failures.push({ t: now(), kind, slow: isSlow });
  };
  const loop = async (pool: Pool, path: string, isSlow: boolean) => {
    while (!stopped()) {
      const t0 = now();
      r.requests++;
      if (isSlow) r.slow.requests++;
      try {
        const res = await pool.request({ path, method: 'GET' });
        const body = (await res.body.text()).trim();
        if (res.statusCode < 200 || res.statusCode > 299) { fail(`HTTP ${res.statusCode}`, isSlow); continue; }
        if (body !== 'blue' && body !== 'green') { fail('unexpected body', isSlow); continue; }
        r.ok++;
        r.colours[body] = (r.colours[body] ?? 0) + 1;
        if (isSlow) {
          r.slow.ok++;
          r.slow.spans.push([t0, now()]);
        }
      } catch (err) {
        fail(failureKind(err), isSlow);
      }
    }
  };
  const loops: Promise<void>[] = [];
  for (let i = 0; i < spec.connections; i++) loops.push(loop(fast, '/', false));
  for (let i = 0; i < spec.slowConnections; i++) loops.push(loop(slow, `/slow?ms=${spec.slowMs}`, true));
  await Promise.all(loops);
  r.endedAt = now();
  await Promise.all([fast.close(), slow.close()]);
  return r;
}

let stop = false;
let running: Promise<LoadResult> | null = null;
const send = (m: LoadReply) => process.send?.(m);

process.on('message', (m: LoadCommand) => {
  if (m.type === 'start' && running === null) {
    running = runLoad(m, () => stop);
    send({ type: 'started' });
  } else if (m.type === 'stop' && running !== null) {
    stop = true;
    running.then((res) => {
      // Disconnect only once the result is written: a large one (thousands of failures) would
      // otherwise be cut off by the disconnect and the driver would see an exit without a result.
      process.send?.({ type: 'result', ...res } satisfies LoadReply, undefined, {}, () => process.disconnect?.());
    }, (err: unknown) => {
      console.error(err);
      process.exit(1);
    });
  }
});
process.on('disconnect', () => { if (!stop) process.exit(1); });
