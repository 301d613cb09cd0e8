/**
 * Keep-alive load for zero-drop tests: N connections each sending GET / back to back, every
 * outcome counted. Nothing is retried (undici retries nothing unless told to), so a request lost
 * to a closing connection or a refused connect shows as a failure.
 */
import { Pool } from 'undici';

export interface LoadCount { requests: number; ok: number; failed: number; byKind: Record<string, number>; versions: Record<string, number> }

export function keepAliveLoad(origin: string, o: { connections?: number; path?: string } = {}): { count: LoadCount; stop: () => Promise<LoadCount> } {
  const pool = new Pool(origin, { connections: o.connections ?? 16, pipelining: 1, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000, headersTimeout: 10_000, bodyTimeout: 10_000 });
  const count: LoadCount = { requests: 0, ok: 0, failed: 0, byKind: {}, versions: {} };
  let stopped = false;
  const fail = (kind: string) => { count.failed++; count.byKind[kind] = (count.byKind[kind] ?? 0) + 1; };
  const loop = async () => {
    while (!stopped) {
      count.requests++;
      try {
        const res = await pool.request({ path: o.path ?? '/', method: 'GET' });
        const body = await res.body.text();
        if (res.statusCode !== 200) { fail(`HTTP ${res.statusCode}`); continue; }
        count.ok++;
        let v = 'other';
        try { const j = JSON.parse(body) as { version?: string; color?: string }; v = `${j.version}@${j.color}`; } catch { /* not the shop */ }
        count.versions[v] = (count.versions[v] ?? 0) + 1;
      } catch (err) {
        fail((err as { code?: string }).code ?? (err as Error).name);
      }
    }
  };
  const loops = Array.from({ length: o.connections ?? 16 }, () => loop());
  return {
    count,
    stop: async () => {
      if (stopped) return count; // idempotent: a test's t.after may stop it again
      stopped = true;
      await Promise.all(loops);
      await pool.close();
      return count;
    },
  };
}
