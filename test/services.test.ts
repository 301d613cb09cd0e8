/**
 * Many services on one router (issue 18): two services by host on the shared listeners, each with
 * its own route table, pipeline, history and metrics. One is deployed and rolled back while both
 * are under keep-alive load: no request fails on either, and the other's version never changes.
 * Unknown hosts get a 404 that says so; the CLI addresses a service with --service/-s.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request as httpRequest } from 'node:http';
import { Daemon } from '../src/daemon/daemon.ts';
import { defaultPlugins } from '../src/daemon/plugins.ts';
import { loadConfigFile } from '../src/config/load.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { cli, freePorts, SHOP_V1, SHOP_V2, tempDir, TEST_TOKEN, writeConfig } from './helpers.ts';

function get(port: number, host: string, path: string, agent?: Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers: { host }, agent, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

/** `workers` keep-alive loops against one host until stopped; counts answers, failures and versions seen. */
function load(port: number, host: string, workers: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: workers });
  const r = { ok: 0, failed: 0, versions: new Set<string>(), errors: [] as string[] };
  let running = true;
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      try {
        const res = await get(port, host, '/', agent);
        if (res.status === 200) { r.ok++; r.versions.add((JSON.parse(res.body) as { version: string }).version); } else { r.failed++; r.errors.push(`${res.status} ${res.body}`); }
      } catch (err) {
        r.failed++;
        r.errors.push((err as Error).message);
      }
    }
  });
  return { r, stop: async () => { running = false; await Promise.all(loops); agent.destroy(); return r; } };
}

test('two services by host on one router: one deploys and rolls back under load, the other is untouched', { timeout: 120_000 }, async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const ports = await freePorts();
  const file = writeConfig(tmp.dir, [
    `router: { listen: 127.0.0.1:${ports.live}, preview: 127.0.0.1:${ports.preview}, drainTimeout: 3s }`,
    `admin: { listen: 127.0.0.1:${ports.admin} }`,
    '# defaults every service inherits',
    'environments:',
    '  provider: process',
    '  process: { command: node server.js, instances: 1, startTimeout: 10s, stopTimeout: 2s }',
    'health: { interval: 100ms, timeout: 1s }',
    'standby: { keepFor: 10m }',
    'services:',
    '  shop:',
    '    hosts: [shop.test, www.shop.test]',
    '    gates:',
    '      - name: version',
    '        http: { path: /version, expect: { status: 200, json: { version: "{version}" } } }',
    '  blog:',
    '    hosts: [blog.test]',
    '    environments: { process: { instances: 2 } }',
  ].join('\n'));
  const config = loadConfigFile(file);
  const daemon = await Daemon.start(config, { logger: silentLogger, plugins: defaultPlugins(), env: { CUTOVER_TOKEN: TEST_TOKEN } });
  t.after(() => daemon.stop({ stopInstances: true }));
  const shop = daemon.service('shop').controller;
  const blog = daemon.service('blog').controller;

  // Nothing live yet: each host says so; an unknown host gets a 404 naming it.
  assert.equal((await get(ports.live, 'shop.test', '/')).status, 503);
  const unknown = await get(ports.live, 'nope.test', '/');
  assert.equal(unknown.status, 404);
  assert.match(unknown.body, /no service is configured for host "nope.test"/);

  assert.equal((await shop.deploy({ version: 'v1', path: SHOP_V1, actor: 'test' }).done).status, 'succeeded');
  assert.equal((await blog.deploy({ version: 'b1', path: SHOP_V1, actor: 'test' }).done).status, 'succeeded');
  assert.equal(daemon.service('blog').provider.constructor.name, 'ProcessProvider');
  assert.equal(blog.status().environments.blue.instances.length, 2, 'blog overrides instances; shop inherits 1');
  assert.equal(shop.status().environments.blue.instances.length, 1);
  assert.equal(JSON.parse((await get(ports.live, 'www.shop.test', '/')).body).version, 'v1');
  assert.equal(JSON.parse((await get(ports.live, 'BLOG.test.', '/')).body).version, 'v1');

  // Load on both hosts while shop deploys v2 (gates through its own preview), then rolls back by CLI.
  const shopLoad = load(ports.live, 'shop.test', 8);
  const blogLoad = load(ports.live, 'blog.test', 8);
  await new Promise((r) => setTimeout(r, 300));
  const d2 = await shop.deploy({ version: 'v2', path: SHOP_V2, actor: 'test' }).done;
  assert.equal(d2.status, 'succeeded', JSON.stringify(d2));
  assert.equal(JSON.parse((await get(ports.live, 'shop.test', '/')).body).version, 'v2');
  await new Promise((r) => setTimeout(r, 300));
  const rb = await cli(['rollback', '--service', 'shop'], { cwd: tmp.dir });
  assert.equal(rb.code, 0, rb.stderr);
  await new Promise((r) => setTimeout(r, 300));
  const [s, b] = [await shopLoad.stop(), await blogLoad.stop()];
  assert.equal(s.failed, 0, `shop: ${s.errors.slice(0, 5).join('; ')}`);
  assert.equal(b.failed, 0, `blog: ${b.errors.slice(0, 5).join('; ')}`);
  assert.ok(s.ok > 50 && b.ok > 50, `load ran (shop ${s.ok}, blog ${b.ok})`);
  assert.deepEqual([...s.versions].sort(), ['v1', 'v2'], 'shop served v1, v2, then v1 again');
  assert.deepEqual([...b.versions], ['v1'], 'blog never changed');
  assert.equal(blog.status().live?.version, 'b1');
  assert.equal(blog.history().length, 1);
  assert.equal(daemon.service('blog').router.table().revision > 0, true);

  // Per-service status and history through the CLI (-s) and the API.
  const st = await cli(['status', '-s', 'shop', '--json'], { cwd: tmp.dir });
  assert.equal(st.code, 0, st.stderr);
  const shopStatus = JSON.parse(st.stdout) as { app: string; live: { version: string }; standby: { version: string } };
  assert.equal(shopStatus.app, 'shop');
  assert.deepEqual((shopStatus as unknown as { service: unknown }).service, { name: 'shop', hosts: ['shop.test', 'www.shop.test'], paths: null, listeners: { live: `http://127.0.0.1:${ports.live}`, tls: null } });
  assert.equal(shopStatus.live.version, 'v1');
  assert.equal(shopStatus.standby.version, 'v2');
  const hist = await cli(['history', '--service', 'blog', '--json'], { cwd: tmp.dir });
  assert.equal(hist.code, 0, hist.stderr);
  assert.deepEqual((JSON.parse(hist.stdout) as { deployments: { version: string }[] }).deployments.map((x) => x.version), ['b1']);
  // Without -s: status lists every service; a command that acts on one refuses to guess.
  const all = await cli(['status'], { cwd: tmp.dir });
  assert.equal(all.code, 0, all.stderr);
  assert.match(all.stdout, /^shop\s+live v1 on blue, standby v2 on green \(warm\)\s+\[shop\.test, www\.shop\.test\]$/m);
  assert.match(all.stdout, /^blog\s+live b1 on blue\s+\[blog\.test\]$/m);
  const ambiguous = await cli(['rollback'], { cwd: tmp.dir });
  assert.equal(ambiguous.code, 2);
  assert.match(ambiguous.stderr, /2 services \(shop, blog\).*--service/);
  const unknownService = await cli(['history', '-s', 'nope'], { cwd: tmp.dir });
  assert.equal(unknownService.code, 2);
  assert.match(unknownService.stderr, /--service nope: no such service/);
  const api = async (path: string) => {
    const res = await fetch(`${daemon.adminUrl()}${path}`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    return { status: res.status, text: await res.text() };
  };
  assert.equal(JSON.parse((await api('/api/v1/status?service=blog')).text).live.version, 'b1');
  assert.equal(JSON.parse((await api('/api/v1/services/shop/history')).text).deployments.length, 2);
  const list = JSON.parse((await api('/api/v1/services')).text) as { services: { name: string; hosts: string[]; live: { version: string } }[] };
  assert.deepEqual(list.services.map((x) => [x.name, x.hosts, x.live.version]), [['shop', ['shop.test', 'www.shop.test'], 'v1'], ['blog', ['blog.test'], 'b1']]);
  assert.equal((await api('/api/v1/services/nope/status')).status, 404);

  // Per-service metrics: one exposition, every series labelled with its service.
  const metrics = (await api('/metrics')).text;
  assert.match(metrics, /cutover_http_requests_total\{[^}]*service="shop"[^}]*\} \d+/);
  assert.match(metrics, /cutover_http_requests_total\{[^}]*service="blog"[^}]*\} \d+/);
  assert.match(metrics, /cutover_live_info\{[^}]*version="b1"[^}]*service="blog"|cutover_live_info\{[^}]*service="blog"[^}]*version="b1"/);
  assert.equal(metrics.match(/^# TYPE cutover_http_requests_total /gm)?.length, 1, 'each family is declared once');
  // State is per service, under <stateDir>/services/<name>.
  assert.match(daemon.service('shop').plan.config.stateDir, /\.cutover\/services\/shop$/);
});

test('a default service takes requests for unknown hosts; path prefixes split one host between services', { timeout: 60_000 }, async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const ports = await freePorts();
  const file = writeConfig(tmp.dir, [
    `router: { listen: 127.0.0.1:${ports.live}, preview: 127.0.0.1:${ports.preview}, defaultService: web }`,
    `admin: { listen: 127.0.0.1:${ports.admin} }`,
    'environments: { provider: process, process: { command: node server.js, instances: 1 } }',
    'health: { interval: 100ms, timeout: 1s }',
    'services:',
    '  web: { hosts: [example.test] }',
    '  api: { hosts: [example.test], paths: [/version] }',
  ].join('\n'));
  const daemon = await Daemon.start(loadConfigFile(file), { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN } });
  t.after(() => daemon.stop({ stopInstances: true }));
  await daemon.service('web').controller.deploy({ version: 'w1', path: SHOP_V1, actor: 'test' }).done;
  await daemon.service('api').controller.deploy({ version: 'a2', path: SHOP_V2, actor: 'test' }).done;
  assert.equal(JSON.parse((await get(ports.live, 'example.test', '/')).body).version, 'v1');
  assert.equal(JSON.parse((await get(ports.live, 'example.test', '/version')).body).version, 'v2');
  assert.equal(JSON.parse((await get(ports.live, 'other.test', '/')).body).version, 'v1', 'unknown host → default service');
  assert.equal((await get(ports.live, 'other.test', '/version')).status, 200);
});
