/**
 * `router.engine: haproxy` end to end: the daemon writes HAProxy's config, runs a real HAProxy
 * (/usr/sbin/haproxy, installed by .ci/run) and moves traffic through its runtime API only.
 * Under keep-alive load with slow requests in flight: deploy, switch, rollback, an instance change
 * (a new release's instances on new ports) — 0 failed requests — and failover (every live
 * instance killed: only the requests in flight on them fail, no 503), and HAProxy's worker is
 * the same process throughout (no reload). Then HAProxy killed: the daemon starts it again serving
 * the live colour and records the event.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Daemon } from '../src/daemon/daemon.ts';
import { parseConfig } from '../src/config/load.ts';
import { silentLogger } from '../src/lib/logger.ts';
import type { HAProxyEngine } from '../src/engines/haproxy/engine.ts';
import { configYaml, freePorts, SHOP_V1, SHOP_V2, tempDir, TEST_TOKEN, waitFor } from './helpers.ts';
import { httpGet } from './support/router.ts';
import { defaultPlugins } from '../src/daemon/plugins.ts';

const get = (url: string, agent?: http.Agent | false) => httpGet(url, agent, 15_000);

/** Keep-alive clients in a loop (`paths` round robin) until stopped; every failure is kept. */
function load(base: string, connections: number, paths: string[]) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const out = { ok: 0, failed: 0, versions: {} as Record<string, number>, errors: [] as string[] };
  let running = true;
  const loops = Array.from({ length: connections }, async (_, i) => {
    while (running) {
      try {
        const r = await get(`${base}${paths[i % paths.length]}`, agent);
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
  return { out, stop: async () => { running = false; await Promise.all(loops); agent.destroy(); } };
}

async function version(url: string): Promise<string> {
  return (JSON.parse((await get(`${url}/`)).body) as { version: string }).version;
}

async function workerPid(engine: HAProxyEngine): Promise<string> {
  return /Pid: (\d+)/.exec(await engine.supervisor.api.exec('show info'))![1];
}

test('haproxy engine: deploy, switch, rollback, instance change and failover under load with 0 failed, never reloading', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir();
  const ports = await freePorts();
  let daemon: Daemon | null = null;
  try {
    const yaml = configYaml(ports, { instances: 2, drainTimeout: '5s', extra: '' }).replace('router:\n', 'router:\n  engine: haproxy\n');
    daemon = await Daemon.start(parseConfig(yaml, { file: 'cutover.yaml', baseDir: dir }), { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN } });
    const engine = daemon.router.engine as HAProxyEngine;
    const live = daemon.liveUrl();
    assert.equal((await get(`${live}/`)).status, 503, 'nothing live yet');
    const d1 = await daemon.controller.deploy({ version: 'v1', path: SHOP_V1, actor: 'test' }).done;
    assert.equal(d1.status, 'succeeded');
    assert.equal(await version(live), 'v1');
    const pid = await workerPid(engine);

    const l = load(live, 16, ['/', '/', '/', '/slow?ms=700']);
    await new Promise((r) => setTimeout(r, 500));
    // switch
    const d2 = await daemon.controller.deploy({ version: 'v2', path: SHOP_V2, actor: 'test' }).done;
    assert.equal(d2.status, 'succeeded', JSON.stringify(d2));
    assert.equal(await version(live), 'v2');
    assert.equal(await version(daemon.previewUrl()!), 'v1', 'preview serves the standby');
    // rollback (and forth), each applied by HAProxy before the call returns
    for (let i = 0; i < 4; i++) {
      await daemon.controller.rollback({ actor: 'test' });
      assert.equal(await version(live), i % 2 === 0 ? 'v1' : 'v2');
    }
    // instance change: a new release on the idle colour runs on new ports (add server / del server)
    const d3 = await daemon.controller.deploy({ version: 'v1', path: SHOP_V1, actor: 'test' }).done;
    assert.equal(d3.status, 'succeeded', JSON.stringify(d3));
    assert.equal(await version(live), 'v1');
    // failover: every live instance dies; the standby (v2) takes the traffic
    const liveColor = daemon.controller.status().live!.color;
    for (const inst of daemon.provider.instances(liveColor)) process.kill(inst.pid!, 'SIGKILL');
    await waitFor(async () => (await version(live).catch(() => '')) === 'v2', { what: 'failover to the standby', timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 800));
    await l.stop();

    const failed = l.out.errors;
    // Not one request fails: a GET in flight on a killed instance is sent again to another server
    // (`retry-on conn-failure empty-response`, safe methods only), one arriving after the kill is
    // answered by the standby's servers (HAProxy's backup servers), never with a 503.
    const beforeKill = failed.filter((e) => !/ECONNRESET|socket hang up|^502/.test(e));
    t.diagnostic(`${l.out.ok} served, ${failed.length} failed around the kill of every live instance: ${[...new Set(failed.map((e) => e.slice(0, 40)))].join(' | ')}`);
    assert.equal(beforeKill.length, 0, `failures other than the killed instances' own requests: ${beforeKill.slice(0, 5).join('; ')}`);
    assert.equal(failed.length, 0, `failed requests around the kill: ${failed.slice(0, 5).join('; ')}`);
    assert.ok(l.out.ok > 200, `requests served: ${l.out.ok}`);
    assert.equal(await workerPid(engine), pid, 'every switch, rollback and instance change went through the runtime API: same HAProxy worker');
    const events = daemon.controller.events({ limit: 10_000 });
    assert.ok(events.some((e) => e.type === 'failover'), 'the failover is recorded');
    assert.ok(events.some((e) => e.type === 'drain' && /drained/.test(e.reason)), 'drains observed from HAProxy are recorded');
    const now = Date.now();
    const served = engine.stats.query('live', 'blue', now - 120_000, now + 1_000).requests + engine.stats.query('live', 'green', now - 120_000, now + 1_000).requests;
    assert.ok(served >= l.out.ok * 0.9, `per-colour stats read from HAProxy: ${served} of ${l.out.ok}`);
  } finally {
    await daemon?.stop({ stopInstances: true });
    cleanup();
  }
});

test('haproxy engine: switches under keep-alive load lose 0 requests (no instance killed)', { timeout: 90_000 }, async () => {
  const { dir, cleanup } = tempDir();
  const ports = await freePorts();
  let daemon: Daemon | null = null;
  try {
    const yaml = configYaml(ports, { instances: 1, drainTimeout: '5s' }).replace('router:\n', 'router:\n  engine: haproxy\n');
    daemon = await Daemon.start(parseConfig(yaml, { file: 'cutover.yaml', baseDir: dir }), { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN } });
    await daemon.controller.deploy({ version: 'v1', path: SHOP_V1, actor: 'test' }).done;
    await daemon.controller.deploy({ version: 'v2', path: SHOP_V2, actor: 'test' }).done;
    const l = load(daemon.liveUrl(), 20, ['/', '/', '/', '/slow?ms=400']);
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 10; i++) {
      await daemon.controller.rollback({ actor: 'test' });
      await new Promise((r) => setTimeout(r, 150));
    }
    await new Promise((r) => setTimeout(r, 500));
    await l.stop();
    assert.equal(l.out.failed, 0, l.out.errors.slice(0, 5).join('; '));
    assert.ok((l.out.versions.v1 ?? 0) > 20 && (l.out.versions.v2 ?? 0) > 20, JSON.stringify(l.out.versions));
  } finally {
    await daemon?.stop({ stopInstances: true });
    cleanup();
  }
});

test('haproxy engine: HAProxy killed → the daemon starts it again serving the live colour and records the event', { timeout: 60_000 }, async () => {
  const { dir, cleanup } = tempDir();
  const ports = await freePorts();
  let daemon: Daemon | null = null;
  try {
    const yaml = configYaml(ports, { instances: 1 }).replace('router:\n', 'router:\n  engine: haproxy\n');
    daemon = await Daemon.start(parseConfig(yaml, { file: 'cutover.yaml', baseDir: dir }), { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN } });
    await daemon.controller.deploy({ version: 'v1', path: SHOP_V1, actor: 'test' }).done;
    await daemon.controller.deploy({ version: 'v2', path: SHOP_V2, actor: 'test' }).done;
    const engine = daemon.router.engine as HAProxyEngine;
    const pid = engine.supervisor.masterPid!;
    process.kill(-pid, 'SIGKILL');
    const ev = await waitFor(() => daemon!.controller.events({ limit: 10_000 }).find((e) => e.type === 'haproxy.restarted'), { what: 'restart recorded', timeoutMs: 15_000 });
    assert.match(ev.reason, /serving green \(v2\)/);
    assert.equal(await version(daemon.liveUrl()), 'v2', 'the new HAProxy serves the live colour');
    assert.equal(await version(daemon.previewUrl()!), 'v1');
    await daemon.controller.rollback({ actor: 'test' });
    assert.equal(await version(daemon.liveUrl()), 'v1', 'and is driven as before');
  } finally {
    await daemon?.stop({ stopInstances: true });
    cleanup();
  }
});

test('haproxy engine: post-switch analysis sees every request (logSample 1 while it judges), then sampling resumes; the baseline counts are exact', { timeout: 90_000 }, async (t) => {
  const { dir, cleanup } = tempDir();
  const ports = await freePorts();
  let daemon: Daemon | null = null;
  try {
    const analysis = 'analysis:\n  window: 3s\n  interval: 1s\n  minRequests: 20\n  baseline: 3s\n';
    const yaml = configYaml(ports, { instances: 1, extra: analysis }).replace('router:\n', 'router:\n  engine: haproxy\n  haproxy: { logSample: 5 }\n');
    daemon = await Daemon.start(parseConfig(yaml, { file: 'cutover.yaml', baseDir: dir }), { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN }, plugins: defaultPlugins() });
    const engine = daemon.router.engine as HAProxyEngine;
    await daemon.controller.deploy({ version: 'v1', path: SHOP_V1, actor: 'test' }).done;
    assert.equal(engine.sampleRates().live, 5);
    const l = load(daemon.liveUrl(), 8, ['/']);
    await new Promise((r) => setTimeout(r, 3_500)); // a baseline for v1
    const seen = new Set<number>();
    const watch = setInterval(() => seen.add(engine.sampleRates().live), 20);
    const d2 = await daemon.controller.deploy({ version: 'v2', path: SHOP_V2, actor: 'test' }).done;
    clearInterval(watch);
    await l.stop();
    assert.equal(d2.status, 'succeeded', JSON.stringify(d2));
    assert.ok(seen.has(1), `every request logged while analysis judged: rates seen ${[...seen].join(', ')}`);
    assert.equal(engine.sampleRates().live, 5, 'sampling resumes after the bake');
    const events = daemon.controller.events({ limit: 10_000 });
    const judged = events.filter((e) => e.type === 'analysis');
    t.diagnostic(judged.map((e) => e.reason).join(' || '));
    assert.ok(judged.length >= 2 && judged.every((e) => (e.data as { outcome: string }).outcome === 'passed'), 'each interval judged and passed');
    const base = (judged[0].data as { baseline: { requests: number } | null }).baseline;
    assert.ok(base !== null && base.requests >= 20, `the baseline (sampled latencies, exact counts): ${JSON.stringify(base)}`);
    assert.equal(l.out.failed, 0, l.out.errors.slice(0, 3).join('; '));
  } finally {
    await daemon?.stop({ stopInstances: true });
    cleanup();
  }
});
