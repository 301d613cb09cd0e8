/**
 * GET /metrics on a real daemon after a deploy, a second deploy and a rollback: the exposition
 * passes `promtool check metrics` and counts what happened.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { request } from 'undici';
import { Daemon } from '../src/daemon/daemon.ts';
import { parseConfig } from '../src/config/load.ts';
import { AdminClient } from '../src/api/client.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { telemetryPlugin } from '../src/telemetry/plugin.ts';
import { CutoverMetrics } from '../src/telemetry/metrics.ts';
import type { Status } from '../src/plugin-api/status.ts';
import { SHOP_V1, SHOP_V2, TEST_TOKEN, configYaml, freePorts, instancesOf, killAll, tempDir, waitFor } from './helpers.ts';

const HAS_PROMTOOL = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;

let daemon: Daemon;
let client: AdminClient;
let stateDir: string;
let cleanup: () => void;

async function deploy(version: string, path: string): Promise<void> {
  await client.call('POST', '/deployments', { version, path });
  const d = await daemon.controller.current()!.done;
  assert.equal(d.status, 'succeeded', d.error?.message);
}

async function hit(method: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const res = await request(daemon.liveUrl() + '/', { method });
    await res.body.dump();
  }
}

async function scrape(token: string | null = TEST_TOKEN): Promise<{ status: number; type: string; body: string }> {
  const res = await request(`${daemon.adminUrl()}/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.statusCode, type: String(res.headers['content-type']), body: await res.body.text() };
}

/** The value of one sample line, e.g. value(body, 'cutover_switches_total{kind="rollback",outcome="ok"}'). */
function value(body: string, series: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

before(async () => {
  const t = tempDir();
  cleanup = t.cleanup;
  const config = parseConfig(configYaml(await freePorts(), { instances: 1, drainTimeout: '1s', startTimeout: '5s' }), { file: 'cutover.yaml', baseDir: t.dir });
  stateDir = config.stateDir;
  daemon = await Daemon.start(config, { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN }, plugins: [telemetryPlugin()] });
  client = new AdminClient({ baseUrl: daemon.adminUrl(), token: TEST_TOKEN, actor: 'test' });
  await deploy('v1', SHOP_V1);
  await hit('GET', 6);
  await hit('POST', 2);
  await hit('PROPFIND', 1);
  await deploy('v2', SHOP_V2);
  await hit('GET', 4);
  await client.call('POST', '/rollback', {});
  await hit('GET', 3);
});

after(async () => {
  await client?.close();
  await daemon?.stop({ stopInstances: true });
  killAll(instancesOf(stateDir));
  cleanup?.();
});

test('/metrics refuses a scrape without the admin token', async () => {
  const r = await scrape(null);
  assert.equal(r.status, 401);
  assert.doesNotMatch(r.body, /cutover_/);
});

test('the exposition after a deploy, a second deploy and a rollback passes promtool check metrics', { skip: !HAS_PROMTOOL && 'promtool is not installed (Debian package prometheus)' }, async () => {
  const r = await scrape();
  assert.equal(r.status, 200);
  assert.match(r.type, /^text\/plain; version=0\.0\.4/);
  const check = spawnSync('promtool', ['check', 'metrics'], { input: r.body, encoding: 'utf8' });
  assert.equal(check.status, 0, `promtool check metrics:\n${check.stdout}${check.stderr}`);
});

test('requests are counted by colour, version, normalised method and status class', async () => {
  const { body } = await scrape();
  const req = (color: string, version: string, method: string, cls = '2xx') => value(body, `cutover_http_requests_total{listener="live",color="${color}",version="${version}",method="${method}",status_class="${cls}"}`);
  assert.equal(req('blue', 'v1', 'GET'), 6 + 3);
  assert.equal(req('blue', 'v1', 'POST'), 2);
  assert.ok((req('blue', 'v1', 'OTHER', '2xx') ?? 0) + (req('blue', 'v1', 'OTHER', '4xx') ?? 0) + (req('blue', 'v1', 'OTHER', '5xx') ?? 0) === 1, 'PROPFIND counts as OTHER');
  assert.equal(req('green', 'v2', 'GET'), 4);
  assert.equal(value(body, 'cutover_http_request_duration_seconds_count{listener="live",color="green"}'), 4);
  assert.equal(value(body, 'cutover_http_requests_in_flight{listener="live",color="blue"}'), 0);
  assert.equal(value(body, 'cutover_upstream_errors_total{listener="live",color="blue",kind="connect"}'), 0);
});

test('state gauges show the live colour, both environments and instance health', async () => {
  const { body } = await scrape();
  assert.equal(value(body, 'cutover_live_info{color="blue",version="v1"}'), 1);
  assert.equal(value(body, 'cutover_environment_info{color="green",role="standby",version="v2"}'), 1);
  assert.equal(value(body, 'cutover_instances{color="blue",health="healthy"}'), 1);
  assert.equal(value(body, 'cutover_deployment_in_progress'), 0);
  assert.ok((value(body, 'cutover_idle_environment_seconds_total{role="standby"}') ?? 0) > 0, 'the warm standby costs time');
});

test('deployments, switches, rollbacks, drains and phases are counted from the controller events', async () => {
  const { body } = await scrape();
  assert.equal(value(body, 'cutover_deployments_started_total'), 2);
  assert.equal(value(body, 'cutover_deployments_total{outcome="succeeded"}'), 2);
  assert.equal(value(body, 'cutover_switches_total{kind="promote",outcome="ok"}'), 2);
  assert.equal(value(body, 'cutover_switches_total{kind="rollback",outcome="ok"}'), 1);
  assert.equal(value(body, 'cutover_switch_duration_seconds_count{kind="promote"}'), 2);
  assert.equal(value(body, 'cutover_rollbacks_total{trigger="manual",outcome="completed"}'), 1);
  assert.equal(value(body, 'cutover_phase_duration_seconds_count{phase="health",outcome="passed"}'), 2);
  assert.equal(value(body, 'cutover_phase_duration_seconds_count{phase="gates",outcome="skipped"}'), 2);
  // The drain of blue (after v2's switch) and of green (after the rollback) finish asynchronously.
  await waitFor(async () => (value((await scrape()).body, 'cutover_drain_duration_seconds_count{outcome="completed"}') ?? 0) >= 2, { what: 'two drains' });
  assert.ok((value(body, 'cutover_last_switch_timestamp_seconds') ?? 0) > Date.now() / 1000 - 60);
});

test('metricsPublic serves /metrics without the token', async () => {
  const t = tempDir();
  const ports = await freePorts();
  const yaml = configYaml(ports).replace('admin:\n', 'admin:\n  metricsPublic: true\n');
  const config = parseConfig(yaml, { file: 'cutover.yaml', baseDir: t.dir });
  const d = await Daemon.start(config, { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN }, plugins: [telemetryPlugin({ processMetrics: false })] });
  try {
    const res = await request(`${d.adminUrl()}/metrics`);
    assert.equal(res.statusCode, 200);
    assert.match(await res.body.text(), /^# HELP cutover_/m);
    const api = await request(`${d.adminUrl()}/api/v1/status`);
    assert.equal(api.statusCode, 401, 'the rest of the API still needs the token');
    await api.body.dump();
  } finally {
    await d.stop({ stopInstances: true });
    t.cleanup();
  }
});

test('request series of old versions are removed so a long-lived daemon keeps bounded series', async () => {
  const m = new CutoverMetrics({ status: () => { throw new Error('unused'); }, inFlight: () => 0, processMetrics: false });
  for (let v = 1; v <= 10; v++) m.onRequest({ listener: 'live', color: 'blue', version: `v${v}`, method: 'GET', status: 200, durationMs: 1 });
  const text = await m.registry.metrics();
  const versions = [...text.matchAll(/cutover_http_requests_total\{[^}]*version="(v\d+)"/g)].map((x) => x[1]);
  assert.deepEqual(versions.sort(), ['v10', 'v7', 'v8', 'v9']);
});

test('gate events are counted and timed by phase, gate and outcome', async () => {
  const empty = (color: 'blue' | 'green') => ({ color, role: 'empty' as const, version: null, path: null, since: 0, retireAt: null, instances: [], healthy: 0 });
  const status = (): Status => ({ app: 'shop', live: null, standby: null, deployment: null, router: { revision: 0, live: 'http://127.0.0.1:1', preview: null }, environments: { blue: empty('blue'), green: empty('green') } });
  const m = new CutoverMetrics({ status, inFlight: () => 0, processMetrics: false });
  const gate = (seq: number, phase: string, name: string, outcome: string, durationMs: number | null) => m.onEvent({ seq, time: Date.now(), type: 'gate', phase, deployment: 'd', actor: 'cutover', reason: name, durationMs, color: 'green', version: 'v2', data: { gate: name, outcome } });
  gate(1, 'gates', 'smoke', 'passed', 120);
  gate(2, 'gates', 'load', 'failed', 5_000);
  gate(3, 'verify', 'smoke', 'passed', 80);
  gate(4, 'gates', 'compare', 'skipped', null);
  const { body } = await m.render();
  assert.equal(value(body, 'cutover_gate_results_total{phase="gates",gate="smoke",outcome="passed"}'), 1);
  assert.equal(value(body, 'cutover_gate_results_total{phase="gates",gate="load",outcome="failed"}'), 1);
  assert.equal(value(body, 'cutover_gate_results_total{phase="verify",gate="smoke",outcome="passed"}'), 1);
  assert.equal(value(body, 'cutover_gate_results_total{phase="gates",gate="compare",outcome="skipped"}'), 1);
  assert.equal(value(body, 'cutover_gate_duration_seconds_sum{phase="gates",gate="load",outcome="failed"}'), 5);
  assert.equal(value(body, 'cutover_events_total{type="gate"}'), 4);
});
