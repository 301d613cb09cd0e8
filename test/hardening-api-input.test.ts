/**
 * Admin API input found wrong in issue #15's probes, each answered as the caller's error (400 naming
 * the field) instead of a 500, a silent empty answer, an echo of a huge value, or a guess about a
 * directory; and the operator lockout: anonymous POSTs from the operator's own address (what a web
 * page can send with `no-cors`) never stop the right token. One in-process daemon on the process
 * provider with the sample shop.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { Daemon } from '../src/daemon/daemon.ts';
import { defaultPlugins } from '../src/daemon/plugins.ts';
import { parseConfig } from '../src/config/load.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { SHOP_V1, SHOP_V2, configYaml, freePorts, tempDir, TEST_TOKEN } from './helpers.ts';

interface Answer { status: number; text: string; json: { error?: { code: string; message: string; details?: { field?: string } } } & Record<string, unknown> }

function call(base: string, method: 'GET' | 'POST', p: string, o: { token?: string | null; body?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...o.headers };
  if (o.token !== null) headers.authorization = `Bearer ${o.token ?? TEST_TOKEN}`;
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}/api/v1${p}`, { method, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text, json: text ? JSON.parse(text) : {} }));
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

describe('admin API input and lockout (issue #15)', () => {
  const { dir, cleanup } = tempDir();
  let daemon: Daemon;
  let base: string;

  before(async () => {
    const ports = await freePorts();
    daemon = await Daemon.start(parseConfig(configYaml(ports, { instances: 1 }), { file: 'cutover.yaml', baseDir: dir }), { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN }, plugins: defaultPlugins() });
    base = daemon.adminUrl();
    assert.equal((await daemon.controller.deploy({ version: 'v1', path: SHOP_V1, actor: 'test' }).done).status, 'succeeded');
    assert.equal((await daemon.controller.deploy({ version: 'v2', path: SHOP_V2, actor: 'test' }).done).status, 'succeeded');
  });
  after(async () => {
    await daemon?.stop({ stopInstances: true });
    cleanup();
  });

  test('40 anonymous POSTs from one address, then a rollback with the right token from the same address succeeds at once', async () => {
    for (let i = 0; i < 40; i++) {
      // What a web page can send cross-origin without a preflight: a "simple" POST, no Authorization.
      const r = await call(base, 'POST', '/rollback', { token: null, body: 'x=1', headers: { 'content-type': 'text/plain' } });
      assert.equal(r.status, i < 20 ? 401 : 429, `anonymous POST ${i + 1}`);
    }
    assert.equal(daemon.controller.status().live?.version, 'v2', 'the anonymous POSTs changed nothing');
    const rb = await call(base, 'POST', '/rollback', { body: '{}' });
    assert.equal(rb.status, 200, rb.text);
    assert.equal(daemon.controller.status().live?.version, 'v1');
    assert.equal((await call(base, 'POST', '/rollback', { body: '{}' })).status, 200, 'and again (back to v2)');
    assert.equal((await call(base, 'GET', '/status', { token: 'a-wrong-guess' })).status, 429, 'wrong tokens stay throttled');
  });

  test('GET /deployments/%ZZ (malformed percent-encoding) is a 400 naming the id, not a 500', async () => {
    const r = await call(base, 'GET', '/deployments/%ZZ');
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error?.code, 'CUTOVER_ERR_BAD_REQUEST');
    assert.equal(r.json.error?.details?.field, 'id');
    assert.equal((await call(base, 'GET', '/deployments/no-such-id')).status, 404);
  });

  test('GET /history?since=abc is a 400 naming since (not a silently empty list); ms and ISO times work', async () => {
    const r = await call(base, 'GET', '/history?since=abc');
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error?.details?.field, 'since');
    assert.equal((await call(base, 'GET', '/history?since=2026-13-45T99:00:00Z')).status, 400, 'an impossible date');
    const all = (await call(base, 'GET', '/history?since=0')).json.deployments as unknown[];
    assert.equal(all.length, 2);
    const iso = (await call(base, 'GET', `/history?since=${encodeURIComponent(new Date(Date.now() - 3_600_000).toISOString())}`)).json.deployments as unknown[];
    assert.equal(iso.length, 2);
    const future = (await call(base, 'GET', `/history?since=${Date.now() + 3_600_000}`)).json.deployments as unknown[];
    assert.equal(future.length, 0);
  });

  test('a 900 KB version string is refused without being echoed back', async () => {
    const huge = `v${'9'.repeat(900_000)}`;
    const r = await call(base, 'POST', '/deployments', { body: JSON.stringify({ version: huge, path: SHOP_V1 }) });
    assert.equal(r.status, 400);
    assert.equal(r.json.error?.details?.field, 'version');
    assert.ok(r.text.length < 1_000, `answer of ${r.text.length} bytes`);
    assert.match(r.json.error?.message ?? '', /900001 characters/);
    // The same for a huge path.
    const p = await call(base, 'POST', '/deployments', { body: JSON.stringify({ version: 'v3', path: `/${'p'.repeat(900_000)}` }) });
    assert.equal(p.status, 400);
    assert.ok(p.text.length < 2_000, `answer of ${p.text.length} bytes`);
  });

  test('a relative release path through the API is refused (400 naming path), nothing deployed', async () => {
    const before = daemon.controller.history({ limit: 100 }).length;
    for (const rel of ['examples/shop/v1', './v1', '../v1', 'v1']) {
      const r = await call(base, 'POST', '/deployments', { body: JSON.stringify({ version: 'v3', path: rel }) });
      assert.equal(r.status, 400, `${rel}: ${r.text}`);
      assert.equal(r.json.error?.code, 'CUTOVER_ERR_RELEASE_PATH');
      assert.equal(r.json.error?.details?.field, 'path');
      assert.match(r.json.error?.message ?? '', /relative/);
    }
    assert.equal(daemon.controller.history({ limit: 100 }).length, before);
  });
});
