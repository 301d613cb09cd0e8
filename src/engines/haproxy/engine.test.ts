/**
 * The HAProxy engine against a real HAProxy (/usr/sbin/haproxy, installed by .ci/run) and real
 * upstreams on loopback: switches and rollbacks under keep-alive load with 0 failed, instance
 * changes, health mirroring, drains, per-colour stats from HAProxy's log, and a killed HAProxy
 * started again serving the live colour. Every switch goes through the runtime API (the test
 * checks the worker pid never changes).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { httpGet, routes, sleep, startUpstream, type TestUpstream } from '../../../test/support/router.ts';
import type { RequestRecord } from '../../router/data-plane.ts';
import { HAProxyEngine, type EngineEvent } from './engine.ts';
import type { HAProxySettings } from './config.ts';

const HAPROXY = process.env.HAPROXY_BIN ?? '/usr/sbin/haproxy';

/** A health view whose verdicts the test sets, emitting `change` like the HealthChecker. */
class Health extends EventEmitter {
  readonly down = new Set<string>();
  isHealthy(id: string): boolean { return !this.down.has(id); }
  reportFailure(): void {}
  set(id: string, healthy: boolean): void {
    if (healthy) this.down.delete(id); else this.down.add(id);
    this.emit('change', id, healthy, 'test');
  }
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

function settings(live: number, preview: number, logSample: HAProxySettings['logSample'] = 1): HAProxySettings {
  return {
    listen: { host: '127.0.0.1', port: live }, preview: { host: '127.0.0.1', port: preview },
    connectTimeoutMs: 2_000, responseTimeoutMs: 10_000, headersTimeoutMs: 5_000, clientKeepAliveMs: 10_000,
    maxHeaderBytes: 16_384, maxHeaderCount: 100, maxUrlBytes: 8_192, maxBodyBytes: 1_048_576,
    trustedProxies: [], threads: 1, logSample, maxConnections: 4_096,
  };
}

interface Rig {
  engine: HAProxyEngine;
  health: Health;
  ups: Record<string, TestUpstream>;
  live: string;
  preview: string;
  events: EngineEvent[];
  records: RequestRecord[];
  dir: string;
}

async function rig(t: { after: (fn: () => Promise<void> | void) => void }, o: { drainTimeoutMs?: number; logSample?: HAProxySettings['logSample'] } = {}): Promise<Rig> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cutover-haproxy-'));
  const ups: Record<string, TestUpstream> = {};
  for (const [c, i] of [['blue', 0], ['blue', 1], ['green', 0], ['green', 1]] as const) ups[`${c}-${i}`] = await startUpstream(c, i);
  const [lp, pp] = [await freePort(), await freePort()];
  const health = new Health();
  const records: RequestRecord[] = [];
  const engine = new HAProxyEngine({
    stateDir: dir, binary: HAPROXY, settings: settings(lp, pp, o.logSample), drainTimeoutMs: o.drainTimeoutMs ?? 5_000, health,
    onRequest: (r) => records.push(r),
  });
  const events: EngineEvent[] = [];
  engine.onEvent = (e) => events.push(e);
  t.after(async () => {
    await engine.close();
    for (const u of Object.values(ups)) await u.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { engine, health, ups, live: `http://127.0.0.1:${lp}`, preview: `http://127.0.0.1:${pp}`, events, records, dir };
}

const blue = (r: Rig, n = 2) => ({ color: 'blue' as const, version: 'v1', targets: [r.ups['blue-0'].target, r.ups['blue-1'].target].slice(0, n) });
const green = (r: Rig, n = 2) => ({ color: 'green' as const, version: 'v2', targets: [r.ups['green-0'].target, r.ups['green-1'].target].slice(0, n) });

const get = (url: string, agent?: http.Agent | false) => httpGet(url, agent, 10_000);

/** N keep-alive clients in a loop until stopped; counts answers by colour and every failure. */
function load(url: string, connections: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const out = { ok: 0, failed: 0, colours: { blue: 0, green: 0 } as Record<string, number>, errors: [] as string[] };
  let running = true;
  const loops = Array.from({ length: connections }, async () => {
    while (running) {
      try {
        const r = await get(url, agent);
        const colour = r.body.split(' ')[0];
        if (r.status === 200 && (colour === 'blue' || colour === 'green')) { out.ok++; out.colours[colour]++; } else { out.failed++; out.errors.push(`${r.status} ${r.body.slice(0, 60)}`); }
      } catch (err) {
        out.failed++;
        out.errors.push((err as Error).message);
      }
    }
  });
  return { out, stop: async () => { running = false; await Promise.all(loops); agent.destroy(); } };
}

test('switches and rollbacks through the runtime API under keep-alive load fail 0 requests', { timeout: 60_000 }, async (t) => {
  const r = await rig(t);
  r.engine.swap(routes(blue(r), green(r)));
  await r.engine.start();
  assert.equal((await get(r.live)).body.split(' ')[0], 'blue');
  assert.equal((await get(r.preview)).body.split(' ')[0], 'green');
  const pid = /Pid: (\d+)/.exec(await r.engine.supervisor.api.exec('show info'))![1];
  const l = load(r.live, 20);
  await sleep(300);
  for (let i = 0; i < 20; i++) {
    const next = i % 2 === 0 ? routes(green(r), blue(r)) : routes(blue(r), green(r));
    const { revision, drain } = r.engine.swap(next);
    await r.engine.applied(revision);
    const want = next.live!.color;
    assert.equal((await get(r.live)).body.split(' ')[0], want, `switch ${i + 1} routes new requests to ${want}`);
    assert.ok(drain, 'a switch drains the old colour');
    await sleep(100);
  }
  await sleep(200);
  await l.stop();
  assert.equal(l.out.failed, 0, `failed: ${l.out.errors.slice(0, 5).join('; ')}`);
  assert.ok(l.out.colours.blue > 50 && l.out.colours.green > 50, `both colours served: ${JSON.stringify(l.out.colours)}`);
  const after = /Pid: (\d+)/.exec(await r.engine.supervisor.api.exec('show info'))![1];
  assert.equal(after, pid, 'no reload: the same HAProxy worker served every switch');
  // Per-colour statistics come from HAProxy's request log.
  await sleep(200);
  const now = Date.now();
  const s = r.engine.stats.query('live', 'green', now - 60_000, now + 1_000);
  assert.ok(s.requests > 50, `green requests counted from HAProxy's log: ${s.requests}`);
  assert.equal(s.errorRate, 0);
  assert.ok(r.records.some((x) => x.listener === 'live' && x.color === 'blue' && x.version === 'v1' && x.status === 200));
});

/** Waits until `fn` holds, polling every 50 ms; fails naming `what` after `ms`. */
async function until(what: string, fn: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function sequential(url: string, n: number, agent: http.Agent): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < n; i++) statuses.push((await get(url, agent)).status);
  return statuses;
}

test('stats: exact counts from HAProxy\'s counters while answers are logged 1 in N; errors always logged; everyRequest logs every request', { timeout: 60_000 }, async (t) => {
  const r = await rig(t, { logSample: 10 });
  r.engine.swap(routes(blue(r), green(r)));
  await r.engine.start();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  t.after(() => agent.destroy());
  const window = () => { const now = Date.now(); return [now - 120_000, now + 1_000] as const; };
  // 400 answers below 500 on live: every one counted (HAProxy's hrsp_* counters), about 1 in 10 logged.
  assert.ok((await sequential(r.live, 400, agent)).every((x) => x === 200));
  await until('400 requests counted from the counters', () => r.engine.stats.query('live', 'blue', ...window()).requests === 400);
  await sleep(300);
  const sampled = r.records.filter((x) => x.listener === 'live');
  assert.ok(sampled.length >= 10 && sampled.length <= 100, `about 40 of 400 logged: ${sampled.length}`);
  assert.ok(sampled.every((x) => x.weight === 10), 'each logged answer stands for 10');
  const q = r.engine.stats.query('live', 'blue', ...window());
  assert.equal(q.samples.length, sampled.length, 'latencies come from the logged answers only');
  assert.ok(Number.isFinite(q.p95));
  // HAProxy's own errors are never sampled: green has no server in rotation → 20 × 503, 20 lines.
  r.health.set(r.ups['green-0'].target.id, false);
  r.health.set(r.ups['green-1'].target.id, false);
  await sleep(300);
  const before = r.records.length;
  assert.ok((await sequential(r.preview, 20, agent)).every((x) => x === 503));
  await until('20 error lines', () => r.records.length - before === 20);
  assert.ok(r.records.slice(before).every((x) => x.status === 503 && x.error === 'no-healthy' && x.weight === undefined));
  await until('20 errors counted', () => r.engine.stats.query('preview', 'green', ...window()).requests === 20);
  assert.equal(r.engine.stats.query('preview', 'green', ...window()).errors['no-healthy'], 20);
  assert.equal(r.engine.stats.query('preview', 'green', ...window()).errorRate, 1);
  // everyRequest: every answer logged (weight 1) until released; then 1 in 10 again.
  const release = await r.engine.everyRequest();
  assert.deepEqual(r.engine.sampleRates(), { live: 1, preview: 1 });
  const n0 = r.records.length;
  await sequential(r.live, 100, agent);
  await until('every one of 100 requests logged', () => r.records.length - n0 === 100);
  assert.ok(r.records.slice(n0).every((x) => x.weight === undefined));
  release();
  await until('sampling back', () => r.engine.sampleRates().live === 10);
  await sleep(100);
  const n1 = r.records.length;
  await sequential(r.live, 300, agent);
  await sleep(500);
  assert.ok(r.records.length - n1 < 100, `1 in 10 again: ${r.records.length - n1} of 300`);
  await until('all 800 live requests counted', () => r.engine.stats.query('live', 'blue', ...window()).requests === 800);
  assert.match(readFileSync(r.engine.files.map, 'utf8'), /^sample_live 10$/m, 'the map file keeps the sampling for a reload or restart');
});

test('logSample auto: N follows the request rate (about AUTO_SAMPLE_LINES_PER_S lines a second), counts stay exact', { timeout: 60_000 }, async (t) => {
  const r = await rig(t, { logSample: 'auto' });
  r.engine.swap(routes(blue(r), green(r)));
  await r.engine.start();
  assert.equal(r.engine.sampleRates().live, 1, 'every request while the rate is unknown or low');
  const l = load(r.live, 16);
  await until('sampling above 1 under load', () => r.engine.sampleRates().live > 1, 15_000);
  await l.stop();
  const n = r.engine.sampleRates().live;
  t.diagnostic(`N under load: ${n}; served ${l.out.ok}`);
  assert.equal(l.out.failed, 0);
  const window = () => { const now = Date.now(); return [now - 120_000, now + 1_000] as const; };
  await until('every answer counted', () => r.engine.stats.query('live', 'blue', ...window()).requests === l.out.ok);
  // Idle again: back to every request.
  await until('back to 1 when idle', () => r.engine.sampleRates().live === 1, 5_000);
});

test('every live instance dies: HAProxy answers from the standby\'s servers (backup) at once instead of 503, and says so', { timeout: 60_000 }, async (t) => {
  const r = await rig(t);
  // green v2 live, then blue v1 live: green v2 is the standby (it has been live), so live_blue falls back to it.
  r.engine.swap(routes(green(r), blue(r)));
  await r.engine.start();
  const back = r.engine.swap(routes(blue(r), green(r)));
  await r.engine.applied(back.revision);
  await sleep(300);
  const l = load(r.live, 16);
  await sleep(500);
  const servedBefore = l.out.ok;
  await Promise.all([r.ups['blue-0'].close(), r.ups['blue-1'].close()]);
  const killedAt = l.out.ok + l.out.failed;
  await sleep(1_500);
  await l.stop();
  t.diagnostic(`${servedBefore} served before the kill, ${l.out.ok + l.out.failed - killedAt} after; failed ${l.out.failed}: ${[...new Set(l.out.errors.map((e) => e.slice(0, 50)))].join(' | ')}`);
  // Cutover's health checker never said a word here (the test's health view keeps them healthy):
  // HAProxy alone ejected the dead servers and used the backups.
  assert.ok(!l.out.errors.some((e) => /^503/.test(e)), `no "no healthy instance" answer: ${l.out.errors.slice(0, 3).join('; ')}`);
  assert.ok(l.out.failed <= 16, `only requests in flight at the kill may fail: ${l.out.failed}`);
  assert.ok(l.out.colours.green > 100, `the standby answered: ${JSON.stringify(l.out.colours)}`);
  await until('the backup episode recorded', () => r.events.some((e) => e.type === 'haproxy.backup'));
  assert.match(r.events.find((e) => e.type === 'haproxy.backup')!.reason, /standby's servers \(green\)/);
});

test('a candidate is never a backup: only a release that has been live backs up the live colour', { timeout: 30_000 }, async (t) => {
  const r = await rig(t);
  r.engine.swap(routes(blue(r), green(r))); // green v2 is a candidate: never live
  await r.engine.start();
  await Promise.all([r.ups['blue-0'].close(), r.ups['blue-1'].close()]);
  const answers = await Promise.all(Array.from({ length: 5 }, () => get(r.live, false)));
  assert.ok(answers.every((a) => a.status === 503), `the candidate took no live request: ${answers.map((a) => a.status).join(',')}`);
  assert.ok(!/^\s*server green/m.test(readFileSync(r.engine.files.config, 'utf8').split('backend live_blue')[1].split('backend ')[0]));
});

test('instance changes: add server, del server and a moved instance, without a reload', { timeout: 30_000 }, async (t) => {
  const r = await rig(t);
  r.engine.swap(routes(blue(r, 1), null));
  await r.engine.start();
  const seen = async (n: number) => {
    const ids = new Set<string>();
    for (let i = 0; i < n; i++) ids.add((await get(r.live)).body.split(' ')[1]);
    return ids;
  };
  assert.deepEqual([...await seen(6)], ['blue-0']);
  let sw = r.engine.swap(routes(blue(r, 2), null));
  await r.engine.applied(sw.revision);
  assert.deepEqual([...await seen(10)].sort(), ['blue-0', 'blue-1'], 'the added instance takes traffic');
  // A server added at run time keeps idle upstream connections like a config server (HAProxy 2.6
  // gives dynamic servers none by default: a new upstream connection per request under load).
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  await Promise.all(Array.from({ length: 16 }, async () => { for (let i = 0; i < 25; i++) await get(r.live, agent); }));
  agent.destroy();
  const row = (await r.engine.supervisor.api.stat()).find((x) => x.pxname === 'live_blue' && x.svname === 'blue-1')!;
  assert.ok(Number(row.connect) * 4 < Number(row.stot), `the added server reuses upstream connections: ${row.connect} connections for ${row.stot} requests (reuse ${row.reuse})`);
  // blue-1 restarted on another port: same id, new address (here: green-1's server stands in).
  const moved = { ...r.ups['green-1'].target, id: 'blue-1' };
  sw = r.engine.swap(routes({ color: 'blue', version: 'v1', targets: [r.ups['blue-0'].target, moved] }, null));
  await r.engine.applied(sw.revision);
  const bodies = new Set<string>();
  for (let i = 0; i < 10; i++) bodies.add((await get(r.live)).body);
  assert.ok(bodies.has('green green-1'), `the moved instance is reached at its new address: ${[...bodies]}`);
  sw = r.engine.swap(routes(blue(r, 1), null));
  await r.engine.applied(sw.revision);
  assert.deepEqual([...await seen(6)], ['blue-0'], 'the removed instance takes no traffic');
  await sleep(600);
  const state = await r.engine.supervisor.api.exec('show servers state live_blue');
  assert.doesNotMatch(state, /blue-1/, 'the removed server is deleted once idle');
  assert.match(readFileSync(r.engine.files.config, 'utf8'), /server blue-0 /);
  assert.doesNotMatch(readFileSync(r.engine.files.config, 'utf8'), /server blue-1 /, 'the config file mirrors the table');
});

test('health verdicts are mirrored: an instance marked down takes no traffic; a colour with none answers 503', { timeout: 30_000 }, async (t) => {
  const r = await rig(t);
  r.engine.swap(routes(blue(r), null));
  await r.engine.start();
  r.health.set('blue-1', false);
  await sleep(100);
  for (let i = 0; i < 8; i++) assert.equal((await get(r.live)).body, 'blue blue-0');
  r.health.set('blue-0', false);
  await sleep(100);
  const res = await get(r.live);
  assert.equal(res.status, 503);
  assert.match(res.body, /no healthy instance of blue/);
  r.health.set('blue-0', true);
  await sleep(100);
  assert.equal((await get(r.live)).status, 200);
  await sleep(300);
  const now = Date.now();
  assert.ok(r.engine.stats.query('live', 'blue', now - 60_000, now + 1_000).errors['no-healthy'] >= 1, 'the 503 is counted as no-healthy');
});

test('drain: a slow request in flight on the old colour completes; at the timeout what remains is closed', { timeout: 30_000 }, async (t) => {
  const r = await rig(t, { drainTimeoutMs: 1_500 });
  r.engine.swap(routes(blue(r), green(r)));
  await r.engine.start();
  const slow = get(`${r.live}/slow?ms=600`);
  await sleep(150);
  const sw = r.engine.swap(routes(green(r), blue(r)));
  await r.engine.applied(sw.revision);
  assert.equal((await get(r.live)).body.split(' ')[0], 'green');
  const report = await sw.drain!;
  assert.equal((await slow).body.split(' ')[0], 'blue', 'the request in flight finished on blue');
  assert.equal(report.completed, true);
  assert.equal(report.color, 'blue');
  assert.ok(report.durationMs >= 300, `drain waited for the slow request: ${report.durationMs} ms`);
  // Now one that outlives the drain timeout.
  const hang = get(`${r.live}/hang`).then(() => 'answered', (e: Error) => `cut: ${e.message}`);
  await sleep(150);
  const sw2 = r.engine.swap(routes(blue(r), green(r)));
  const report2 = await sw2.drain!;
  assert.equal(report2.completed, false);
  assert.equal(report2.closedRequests, 1);
  assert.match(await hang, /^cut|answered/);
});

test('HAProxy killed: the engine starts it again serving the live colour and reports the event', { timeout: 30_000 }, async (t) => {
  const r = await rig(t);
  r.engine.swap(routes(blue(r), green(r)));
  await r.engine.start();
  const sw = r.engine.swap(routes(green(r), blue(r)));
  await r.engine.applied(sw.revision);
  const pid = r.engine.supervisor.masterPid!;
  process.kill(-pid, 'SIGKILL');
  const deadline = Date.now() + 10_000;
  while (r.events.length === 0 && Date.now() < deadline) await sleep(50);
  assert.equal(r.events[0]?.type, 'haproxy.restarted', JSON.stringify(r.events));
  assert.match(r.events[0].reason, /serving green \(v2\)/);
  assert.notEqual(r.engine.supervisor.masterPid, pid);
  assert.equal((await get(r.live)).body.split(' ')[0], 'green', 'the restarted HAProxy serves the live colour');
  assert.equal((await get(r.preview)).body.split(' ')[0], 'blue');
  // And it is driven as before.
  const back = r.engine.swap(routes(blue(r), green(r)));
  await r.engine.applied(back.revision);
  assert.equal((await get(r.live)).body.split(' ')[0], 'blue');
});

test('a new engine attaches to the HAProxy a previous one left running (daemon upgrade): traffic never stopped', { timeout: 30_000 }, async (t) => {
  const r = await rig(t);
  r.engine.swap(routes(blue(r), green(r)));
  await r.engine.start();
  const sw = r.engine.swap(routes(green(r), blue(r)));
  await r.engine.applied(sw.revision);
  const pid = r.engine.supervisor.masterPid!;
  await r.engine.close({ keepRunning: true });
  assert.equal((await get(r.live)).body.split(' ')[0], 'green', 'HAProxy keeps serving while no daemon runs');
  const next = new HAProxyEngine({
    stateDir: r.dir, binary: HAPROXY, settings: settings(Number(new URL(r.live).port), Number(new URL(r.preview).port)), drainTimeoutMs: 5_000, health: r.health,
  });
  const events: EngineEvent[] = [];
  next.onEvent = (e) => events.push(e);
  t.after(() => next.close());
  next.swap(routes(green(r), blue(r)));
  await next.start();
  assert.equal(next.supervisor.masterPid, pid, 'the same HAProxy master, not a second one');
  assert.equal(events[0]?.type, 'haproxy.attached');
  assert.equal((await get(r.live)).body.split(' ')[0], 'green');
  const back = next.swap(routes(blue(r), green(r)));
  await next.applied(back.revision);
  assert.equal((await get(r.live)).body.split(' ')[0], 'blue', 'the attached HAProxy is driven as before');
});

test('manage: false drives an HAProxy run by something else through its socket, and never stops it', { timeout: 30_000 }, async (t) => {
  const r = await rig(t);
  // "Something else" runs HAProxy on the config Cutover writes: here a first, managing engine started it.
  r.engine.swap(routes(blue(r), null));
  await r.engine.start();
  const pid = r.engine.supervisor.masterPid!;
  await r.engine.close({ keepRunning: true });
  t.after(() => { try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ } });
  const attached = new HAProxyEngine({
    stateDir: r.dir, binary: HAPROXY, manage: false, settings: settings(Number(new URL(r.live).port), Number(new URL(r.preview).port)), drainTimeoutMs: 5_000, health: r.health,
  });
  // As if that HAProxy had been started from an older map, without the log sampling entries.
  await r.engine.supervisor.api.batch([`del map ${r.engine.files.map} sample_live`, `del map ${r.engine.files.map} sample_preview`]);
  attached.swap(routes(blue(r), green(r)));
  await attached.start();
  assert.match(await attached.supervisor.api.exec(`show map ${attached.files.map}`), / sample_live 1\n/, 'the missing entries were added');
  const sw = attached.swap(routes(green(r), blue(r)));
  assert.deepEqual((await sw.applied).missing, []);
  assert.equal((await get(r.live)).body.split(' ')[0], 'green');
  await attached.close();
  assert.equal((await get(r.live)).body.split(' ')[0], 'green', 'closing an unmanaged engine leaves HAProxy serving');
});

test('router.tls: HAProxy terminates HTTPS on the live listener; reloadTls serves the new certificate to new handshakes', { timeout: 30_000 }, async (t) => {
  const { execFileSync } = await import('node:child_process');
  const tls = await import('node:tls');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cutover-haproxy-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const makeCert = (cn: string) => {
    const cert = path.join(dir, `${cn}.crt`);
    const key = path.join(dir, `${cn}.key`);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
      '-days', '1', '-subj', `/CN=${cn}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
    return { cert, key };
  };
  const first = makeCert('first');
  const files = { cert: path.join(dir, 'live.crt'), key: path.join(dir, 'live.key') };
  const { copyFileSync } = await import('node:fs');
  copyFileSync(first.cert, files.cert);
  copyFileSync(first.key, files.key);
  const up = await startUpstream('blue', 0);
  t.after(() => up.close());
  const [lp, pp] = [await freePort(), await freePort()];
  const engine = new HAProxyEngine({ stateDir: dir, binary: HAPROXY, settings: settings(lp, pp), drainTimeoutMs: 2_000, health: new Health(), tls: files });
  t.after(() => engine.close());
  engine.swap(routes({ color: 'blue', version: 'v1', targets: [up.target] }, null));
  await engine.start();
  const handshake = (ca: string) => new Promise<{ cn: string; body: string }>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: lp, ca: [readFileSync(ca, 'utf8')], servername: 'localhost' }, () => {
      const cn = String((s.getPeerCertificate().subject as { CN?: string }).CN);
      s.write('GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n');
      let raw = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => { raw += d; });
      s.on('end', () => resolve({ cn, body: raw.split('\r\n\r\n')[1] ?? '' }));
    });
    s.on('error', reject);
  });
  const a = await handshake(first.cert);
  assert.equal(a.cn, 'first');
  assert.equal(a.body, 'blue blue-0');
  const second = makeCert('second');
  copyFileSync(second.cert, files.cert);
  copyFileSync(second.key, files.key);
  assert.equal(engine.reloadTls(), true);
  const deadline = Date.now() + 10_000;
  let b = await handshake(first.cert).catch(() => null);
  while (b !== null && b.cn === 'first' && Date.now() < deadline) { await sleep(100); b = await handshake(first.cert).catch(() => null); }
  const c = await handshake(second.cert);
  assert.equal(c.cn, 'second', 'new handshakes get the new certificate');
  assert.equal(c.body, 'blue blue-0');
});

test('a missing HAProxy binary or an unanswered socket is a config error naming the setting', { timeout: 15_000 }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cutover-haproxy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const health = new Health();
  const missing = new HAProxyEngine({ stateDir: dir, binary: '/nonexistent/haproxy', settings: settings(await freePort(), await freePort()), drainTimeoutMs: 1_000, health });
  await assert.rejects(missing.start(), (err: Error & { code?: string; details?: { field?: string } }) => err.code === 'CUTOVER_ERR_CONFIG' && err.details?.field === 'router.haproxy.binary');
  await missing.close();
  const unmanaged = new HAProxyEngine({ stateDir: dir, binary: HAPROXY, manage: false, settings: settings(await freePort(), await freePort()), drainTimeoutMs: 1_000, health });
  await assert.rejects(unmanaged.start(), (err: Error & { code?: string; details?: { field?: string } }) => err.code === 'CUTOVER_ERR_CONFIG' && err.details?.field === 'router.haproxy.socket');
  await unmanaged.close();
});
