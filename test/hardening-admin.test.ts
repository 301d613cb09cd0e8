/**
 * The admin surface under attack (issue #6): failed-auth rate limiting, audit of every mutating
 * call, malformed input to every mutating route (400 with the field, nothing changed), and the
 * start-up warning for listeners bound beyond loopback. One in-process daemon on the static
 * provider (two real HTTP servers per colour) serves the in-process tests.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { Daemon } from '../src/daemon/daemon.ts';
import { defaultPlugins } from '../src/daemon/plugins.ts';
import { parseConfig } from '../src/config/load.ts';
import { silentLogger } from '../src/lib/logger.ts';
import { configYaml, freePort, freePorts, serveShop, startDaemonProcess, staticConfigYaml, tempDir, TEST_TOKEN, waitFor, waitForHealth, writeConfig } from './helpers.ts';

interface Answer { status: number; headers: Record<string, string | string[] | undefined>; json: { error?: { code: string; message: string; details?: { field?: string } } } & Record<string, unknown> }

/** One admin call over node:http; `from` picks the client's source address on loopback (127.0.0.x). */
function call(base: string, method: 'GET' | 'POST', p: string, o: { token?: string | null; body?: string; from?: string; actor?: string } = {}): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (o.token !== null) headers.authorization = `Bearer ${o.token ?? TEST_TOKEN}`;
  if (o.actor) headers['x-cutover-actor'] = o.actor;
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}/api/v1${p}`, { method, headers, localAddress: o.from ?? '127.0.0.1', agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, json: text ? JSON.parse(text) : {} }));
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

describe('admin API hardening', () => {
  const { dir, cleanup } = tempDir();
  let children: ChildProcess[] = [];
  let daemon: Daemon;
  let base: string;

  before(async () => {
    const ports = await freePorts();
    const blue = [await freePort()];
    const green = [await freePort()];
    children = [serveShop(blue[0], 'blue'), serveShop(green[0], 'green')];
    await waitForHealth([...blue, ...green], 'static targets up');
    const yaml = staticConfigYaml(ports, blue[0], green[0]);
    daemon = await Daemon.start(parseConfig(yaml, { file: 'cutover.yaml', baseDir: dir }), { logger: silentLogger, env: { CUTOVER_TOKEN: TEST_TOKEN }, plugins: defaultPlugins() });
    base = daemon.adminUrl();
    assert.equal((await daemon.controller.deploy({ version: 'r1', path: null, actor: 'test' }).done).status, 'succeeded');
    assert.equal((await daemon.controller.deploy({ version: 'r2', path: null, actor: 'test' }).done).status, 'succeeded');
  });
  after(async () => {
    await daemon?.stop({ stopInstances: true });
    for (const c of children) c.kill('SIGKILL');
    cleanup();
  });

  /** What a mutating call could change: roles, versions, route revision, history, events. */
  function snapshot(): string {
    const s = daemon.controller.status();
    return JSON.stringify({
      live: s.live, standby: s.standby, deployment: s.deployment, revision: s.router.revision,
      history: daemon.controller.history({ limit: 100 }),
      events: daemon.controller.events({ limit: 10_000 }).filter((e) => e.type !== 'health').length,
    });
  }

  test('20 failed authentications from one address, then 429 with Retry-After for failures — the right token still passes; other addresses unaffected', async () => {
    for (let i = 0; i < 20; i++) {
      const r = await call(base, 'GET', '/status', { token: `wrong-${i}`, from: '127.0.0.3' });
      assert.equal(r.status, 401);
      assert.equal(r.json.error?.code, 'CUTOVER_ERR_UNAUTHORIZED');
      assert.doesNotMatch(JSON.stringify(r.json), /wrong-/, 'the wrong token is not echoed');
    }
    const limited = await call(base, 'GET', '/status', { token: 'wrong-again', from: '127.0.0.3' });
    assert.equal(limited.status, 429);
    assert.equal(limited.json.error?.code, 'CUTOVER_ERR_RATE_LIMITED');
    const retry = Number(limited.headers['retry-after']);
    assert.ok(retry >= 1 && retry <= 60, `Retry-After: ${limited.headers['retry-after']}`);
    // The message says how long to wait, the same figure as Retry-After (issue 16).
    assert.equal(limited.json.error?.message, `too many failed authentication attempts from this address; try again in ${retry}s (check CUTOVER_TOKEN or the token file; a request with the right token is never refused)`);
    assert.equal((await call(base, 'GET', '/status', { token: 'wrong-more', from: '127.0.0.3' })).status, 429, 'wrong guesses stay refused');
    assert.equal((await call(base, 'POST', '/rollback', { token: null, from: '127.0.0.3', body: '{}' })).status, 429);
    // Issue #15: the failures of others (a web page posting from the operator's own address) never lock the operator out.
    assert.equal((await call(base, 'GET', '/status', { from: '127.0.0.3' })).status, 200, 'the right token is never refused');
    assert.equal((await call(base, 'GET', '/status', { from: '127.0.0.4' })).status, 200, 'another address is not limited');
    assert.equal((await call(base, 'GET', '/status', { token: null, from: '127.0.0.4' })).status, 401);
  });

  test('every mutating call is audited with its actor and source address', async () => {
    const before = daemon.controller.events({ limit: 10_000 }).length;
    const rb = await call(base, 'POST', '/rollback', { body: '{"reason":"audit check"}', actor: 'alice@ops', from: '127.0.0.5' });
    assert.equal(rb.status, 200, JSON.stringify(rb.json));
    const back = await call(base, 'POST', '/rollback', { body: '{}', actor: 'bob', from: '127.0.0.6' });
    assert.equal(back.status, 200);
    const audits = daemon.controller.events({ limit: 10_000 }).slice(before).filter((e) => e.type === 'audit');
    assert.deepEqual(audits.map((e) => [e.actor, e.data?.source, e.data?.path]), [['alice@ops', '127.0.0.5', '/rollback'], ['bob', '127.0.0.6', '/rollback']]);
    assert.match(audits[0].reason, /^alice@ops from 127\.0\.0\.5: rollback/);
    // An actor header cannot inject text into the record (it is cut to [\w.@+-], 64 characters).
    const evil = await call(base, 'POST', '/rollback', { body: '{}', actor: `mallory <script>"; ${'a'.repeat(100)}` });
    assert.equal(evil.status, 200);
    const last = daemon.controller.events({ limit: 10_000 }).filter((e) => e.type === 'audit').at(-1);
    assert.equal(last?.actor, `mallory${'script'}${'a'.repeat(64 - 13)}`);
    assert.equal((await call(base, 'POST', '/rollback', { body: '{}', actor: 'dave' })).status, 200);
    const deployBody = JSON.stringify({ version: 'r3', path: null, manual: true });
    const dep = await call(base, 'POST', '/deployments', { body: deployBody, actor: 'carol' });
    assert.equal(dep.status, 202, JSON.stringify(dep.json));
    const abort = await call(base, 'POST', '/abort', { body: '{"reason":"audit check"}', actor: 'carol' });
    assert.equal(abort.status, 200);
    const more = daemon.controller.events({ limit: 10_000 }).slice(before).filter((e) => e.type === 'audit').slice(4);
    assert.deepEqual(more.map((e) => [e.actor, e.data?.path]), [['carol', '/deployments'], ['carol', '/abort']]);
  });

  const routes = ['/deployments', '/promote', '/abort', '/rollback'];
  const bad: [string, string, string | RegExp][] = [
    ['malformed JSON', '{"version": "r9",', '(body)'],
    ['a JSON array', '[1, 2]', '(body)'],
    ['a JSON string', '"r9"', '(body)'],
    ['null', 'null', '(body)'],
    ['an unknown field', '{"version": "r9", "path": null, "sudo": true}', /sudo/],
  ];
  for (const route of routes) {
    for (const [what, body, field] of bad) {
      test(`POST ${route} with ${what}: 400 naming the field, nothing changed`, async () => {
        const before = snapshot();
        const r = await call(base, 'POST', route, { body });
        assert.equal(r.status, 400, JSON.stringify(r.json));
        assert.equal(r.json.error?.code, 'CUTOVER_ERR_BAD_REQUEST');
        const f = r.json.error?.details?.field ?? '';
        if (typeof field === 'string') assert.equal(f, field);
        else assert.match(f, field);
        assert.equal(snapshot(), before);
      });
    }
  }

  const wrongTypes: [string, string, string][] = [
    ['/deployments', '{"version": 5}', 'version'],
    ['/deployments', '{"version": "r9", "manual": "yes"}', 'manual'],
    ['/deployments', '{"version": "r9", "path": 7}', 'path'],
    ['/deployments', '{"version": "../../etc; rm -rf /"}', 'version'],
    ['/deployments', '{}', 'version'],
    ['/promote', '{"force": "true"}', 'force'],
    ['/abort', '{"reason": 42}', 'reason'],
    ['/rollback', `{"reason": "${'x'.repeat(501)}"}`, 'reason'],
  ];
  for (const [route, body, field] of wrongTypes) {
    test(`POST ${route} ${body.length > 60 ? `${body.slice(0, 40)}…` : body}: 400 on "${field}", nothing changed`, async () => {
      const before = snapshot();
      const r = await call(base, 'POST', route, { body });
      assert.equal(r.status, 400, JSON.stringify(r.json));
      assert.equal(r.json.error?.details?.field, field);
      assert.equal(snapshot(), before);
    });
  }

  test('a body over 1 MiB is refused (400), nothing changed', async () => {
    const before = snapshot();
    const r = await call(base, 'POST', '/rollback', { body: JSON.stringify({ reason: 'x'.repeat(1_100_000) }) });
    assert.equal(r.status, 400);
    assert.equal(snapshot(), before);
  });
});

test('admin API and preview bound beyond loopback: `cutover up` warns on stdout and in its log', async () => {
  const { dir, cleanup } = tempDir();
  const ports = await freePorts();
  writeConfig(dir, configYaml(ports).replace(`listen: 127.0.0.1:${ports.admin}`, `listen: 0.0.0.0:${ports.admin}`).replace(`preview: 127.0.0.1:${ports.preview}`, `preview: 0.0.0.0:${ports.preview}`));
  const d = await startDaemonProcess(dir);
  try {
    await waitFor(() => /warning {2}preview listener/.test(d.output()), { what: 'warnings on stdout', timeoutMs: 5_000 });
    const out = d.output();
    assert.match(out, /warning {2}admin API listens on 0\.0\.0\.0:\d+, beyond loopback: .*without TLS/);
    assert.match(out, /warning {2}preview listener listens on 0\.0\.0\.0:\d+, beyond loopback/);
    assert.match(out, /"level":40.*"warning":"exposed-listener"/, 'also a structured log line');
  } finally {
    await d.stop('SIGTERM');
    cleanup();
  }
  // On loopback (the default) nothing is said.
  const quiet = tempDir();
  const p2 = await freePorts();
  writeConfig(quiet.dir, configYaml(p2));
  const d2 = await startDaemonProcess(quiet.dir);
  try {
    await new Promise((r) => setTimeout(r, 200));
    assert.doesNotMatch(d2.output(), /warning/);
  } finally {
    await d2.stop('SIGTERM');
    quiet.cleanup();
  }
});
