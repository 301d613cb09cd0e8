/**
 * `router.workers: 2` end to end: the daemon's builtin router on two worker threads sharing the
 * live and preview ports. 20 switches (rollbacks between two warm colours) under keep-alive load
 * with slow requests in flight fail 0 requests; every switch returns only after both workers
 * applied it; per-colour stats reach the controller's side.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Daemon } from '../src/daemon/daemon.ts';
import { parseConfig } from '../src/config/load.ts';
import { silentLogger } from '../src/lib/logger.ts';
import type { WorkerPool } from '../src/router/workers.ts';
import { configYaml, freePorts, SHOP_V1, SHOP_V2, tempDir, TEST_TOKEN } from './helpers.ts';
import { httpGet } from './support/router.ts';

const get = (url: string, agent?: http.Agent | false) => httpGet(url, agent, 15_000);

test('workers = 2: 20 switches under keep-alive load fail 0, each applied by both workers', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = tempDir();
  const ports = await freePorts();
  let daemon: Daemon | null = null;
  try {
    const yaml = configYaml(ports, { instances: 1, drainTimeout: '5s' }).replace('router:\n', 'router:\n  workers: 2\n');
    daemon = await Daemon.start(parseConfig(yaml, { file: 'cutover.yaml', baseDir: dir }), { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN } });
    const pool = daemon.router.engine as WorkerPool;
    assert.equal(pool.size, 2);
    await daemon.controller.deploy({ version: 'v1', path: SHOP_V1, actor: 'test' }).done;
    const d2 = await daemon.controller.deploy({ version: 'v2', path: SHOP_V2, actor: 'test' }).done;
    assert.equal(d2.status, 'succeeded');
    const live = daemon.liveUrl();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 24 });
    const out = { ok: 0, failed: 0, errors: [] as string[], versions: {} as Record<string, number> };
    let running = true;
    const loops = Array.from({ length: 24 }, async (_, i) => {
      while (running) {
        try {
          const r = await get(`${live}${i % 6 === 0 ? '/slow?ms=400' : '/'}`, agent);
          if (r.status !== 200) throw new Error(`${r.status} ${r.body.slice(0, 80)}`);
          const v = (JSON.parse(r.body) as { version: string }).version;
          out.versions[v] = (out.versions[v] ?? 0) + 1;
          out.ok++;
        } catch (err) {
          out.failed++;
          out.errors.push((err as Error).message);
        }
      }
    });
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 20; i++) {
      await daemon.controller.rollback({ actor: 'test' });
      const want: string | null = daemon.controller.status().live!.version;
      const fresh = await Promise.all(Array.from({ length: 6 }, () => get(`${live}/`, false)));
      for (const f of fresh) assert.equal((JSON.parse(f.body) as { version: string }).version, want, `rollback ${i + 1} applied by every worker`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 300));
    running = false;
    await Promise.all(loops);
    agent.destroy();
    assert.equal(out.failed, 0, out.errors.slice(0, 5).join('; '));
    assert.ok((out.versions.v1 ?? 0) > 50 && (out.versions.v2 ?? 0) > 50, JSON.stringify(out.versions));
    assert.ok(pool.served().every((n) => n > 0), `both workers served: ${pool.served()}`);
    await new Promise((r) => setTimeout(r, 150));
    const now = Date.now();
    const s = pool.stats.query('live', 'blue', now - 120_000, now + 1_000).requests + pool.stats.query('live', 'green', now - 120_000, now + 1_000).requests;
    assert.ok(s >= out.ok, `stats from both workers: ${s} of ${out.ok}`);
  } finally {
    await daemon?.stop({ stopInstances: true });
    cleanup();
  }
});
