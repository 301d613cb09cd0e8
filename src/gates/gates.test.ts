/**
 * Each gate kind on its own against real loopback servers and real shell processes: what it
 * measures, what it compares it with, and the one line it records.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig, ConfigError } from '../config/load.ts';
import { gatesSchema, type Gate, type HttpGateSpec } from '../config/gates.ts';
import { jsonSubsetMismatch, runHttpGate } from './http-gate.ts';
import { runCommandGate } from './command-gate.ts';
import { runCompareGate } from './compare-gate.ts';
import { runLoadGate } from './load-gate.ts';
import { runGates, type GateEvent } from './runner.ts';
import { parityReport } from './parity.ts';
import type { GateTarget } from './types.ts';

/** A service: `errorEvery` > 0 makes every n-th request of / answer 500; `delayMs` slows everything. */
function service(o: { version: string; errorEvery?: number; delayMs?: number }) {
  let n = 0;
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    const reply = () => {
      if (url === '/version') { res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ version: o.version, build: { n: 7, tags: ['a', 'b'] } })); return; }
      if (url === '/echo') { req.pipe(res); return; }
      if (url === '/text') { res.writeHead(200).end('hello world'); return; }
      n++;
      if (o.errorEvery && n % o.errorEvery === 0) { res.writeHead(500).end('boom'); return; }
      res.writeHead(200).end('ok');
    };
    if (o.delayMs) setTimeout(reply, o.delayMs); else reply();
  });
  return {
    server,
    async start() { await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r())); return `http://127.0.0.1:${(server.address() as AddressInfo).port}`; },
    async stop() { server.closeAllConnections(); await new Promise((r) => server.close(r)); },
  };
}

const good = service({ version: 'v2' });
const broken = service({ version: 'v2', errorEvery: 2 });
// 200 ms: far above what a busy machine adds to a loopback request (issue 16), see the compare gate test.
const slow = service({ version: 'v2', delayMs: 200 });
let goodUrl: string, brokenUrl: string, slowUrl: string;
let tmp: string;

function target(url: string, extra: Partial<GateTarget> = {}): GateTarget {
  return { url, listener: 'preview', liveUrl: null, hasLive: false, version: 'v2', color: 'green', cwd: tmp, signal: new AbortController().signal, ...extra };
}
function gate(yaml: object): Gate {
  return gatesSchema.parse([yaml])[0];
}
function httpOf(yaml: object): HttpGateSpec {
  const g = gate(yaml);
  assert.equal(g.kind, 'http');
  return (g as Extract<Gate, { kind: 'http' }>).http;
}

before(async () => {
  goodUrl = await good.start();
  brokenUrl = await broken.start();
  slowUrl = await slow.start();
  tmp = mkdtempSync(path.join(os.tmpdir(), 'cutover-gates-'));
});
after(async () => {
  await Promise.all([good.stop(), broken.stop(), slow.stop()]);
  rmSync(tmp, { recursive: true, force: true });
});

test('config: each gate needs exactly one kind, unique names, and valid fields; errors name the line', () => {
  const base = 'environments: { process: { command: node server.js } }\n';
  const bad = `${base}gates:\n  - name: a\n    http: { path: /x }\n    command: echo hi\n  - name: a\n    http: { path: /y }\n  - name: c\n    load: { maxErrorRate: 120% }\n`;
  assert.throws(() => parseConfig(bad, { file: 'cutover.yaml', baseDir: tmp }), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /cutover\.yaml:3: gates\[0\]: expected exactly one of http, command, load, compare, mirror or session, got http and command/);
    assert.match(e.message, /cutover\.yaml:9: gates\[2\]\.load\.maxErrorRate: expected a share like "1%"/);
    return true;
  });
  assert.throws(() => parseConfig(`${base}gates:\n  - name: a\n    http: { path: /x }\n  - name: a\n    command: echo hi\n`, { file: 'cutover.yaml', baseDir: tmp }),
    /cutover\.yaml:5: gates\[1\]\.name: gate name "a" is used twice/);
  const ok = parseConfig(`${base}gates:\n  - name: load\n    load: { duration: 2s, maxErrorRate: 0.1%, maxP99: 300ms }\nwarmup: { requests: 20 }\n`, { file: 'cutover.yaml', baseDir: tmp });
  assert.deepEqual(ok.gates[0], { name: 'load', kind: 'load', timeout: 32_000, load: { duration: 2_000, connections: 10, method: 'GET', path: '/', headers: {}, maxErrorRate: 0.001, maxP99: 300 } });
  assert.deepEqual(ok.warmup, { requests: 20, paths: ['/'], connections: 4, method: 'GET', headers: {} });
});

test('JSON subset: listed keys only, arrays element-wise, first mismatch named with its path', () => {
  const actual = { version: 'v2', build: { n: 7, tags: ['a', 'b'] }, extra: true };
  assert.equal(jsonSubsetMismatch(actual, { version: 'v2', build: { tags: ['a', 'b'] } }, 'json'), null);
  assert.equal(jsonSubsetMismatch(actual, { version: 'v1' }, 'json'), 'json.version: got "v2", expected "v1"');
  assert.equal(jsonSubsetMismatch(actual, { build: { tags: ['a'] } }, 'json'), 'json.build.tags: got 2 element(s), expected 1');
  assert.equal(jsonSubsetMismatch(actual, { missing: 1 }, 'json'), 'json.missing: missing (expected 1)');
  assert.equal(jsonSubsetMismatch(actual, { build: { n: '7' } }, 'json'), 'json.build.n: got 7, expected "7"');
});

test('http gate: status, JSON with {version}, body text and latency are checked and reported with values', async () => {
  const pass = await runHttpGate('version', httpOf({ name: 'version', http: { path: '/version', expect: { json: { version: '{version}' } } } }), target(goodUrl), 5_000);
  assert.equal(pass.outcome, 'passed', pass.reason);
  assert.match(pass.reason, /^version: GET \/version → 200 in [\d.]+ms; json matches \{"version":"v2"\}$/);
  assert.equal(pass.values.status, 200);

  const wrongVersion = await runHttpGate('version', httpOf({ name: 'version', http: { path: '/version', expect: { json: { version: '{version}' } } } }), target(goodUrl, { version: 'v3' }), 5_000);
  assert.equal(wrongVersion.outcome, 'failed');
  assert.match(wrongVersion.reason, /json\.version: got "v2", expected "v3"/);
  assert.deepEqual(wrongVersion.thresholds.json, { version: 'v3' });

  const echo = await runHttpGate('echo', httpOf({ name: 'echo', http: { method: 'post', path: '/echo', body: 'ping {color}', expect: { bodyContains: 'ping green', maxLatency: '500ms' } } }), target(goodUrl), 5_000);
  assert.equal(echo.outcome, 'passed', echo.reason);
  assert.match(echo.reason, /POST \/echo → 200 .*body contains "ping green"; latency ≤ 500ms/);

  const status = await runHttpGate('text', httpOf({ name: 'text', http: { path: '/text', expect: { status: [201, 204], bodyContains: 'bye' } } }), target(goodUrl), 5_000);
  assert.equal(status.outcome, 'failed');
  assert.match(status.reason, /status 200 \(expected 201 or 204\); body does not contain "bye" \(got "hello world"\)/);

  const tooSlow = await runHttpGate('slow', httpOf({ name: 'slow', http: { path: '/', expect: { maxLatency: '20ms' } } }), target(slowUrl), 5_000);
  assert.equal(tooSlow.outcome, 'failed');
  assert.match(tooSlow.reason, /latency [\d.]+ms > max 20ms/);
  assert.ok((tooSlow.values.latencyMs as number) >= 55);

  const timeout = await runHttpGate('slow', httpOf({ name: 'slow', http: { path: '/' } }), target(slowUrl), 20);
  assert.equal(timeout.outcome, 'failed');
  assert.match(timeout.reason, /failed after [\d.]+ms: no answer within 20ms/);

  const refused = await runHttpGate('down', httpOf({ name: 'down', http: { path: '/' } }), target('http://127.0.0.1:1'), 2_000);
  assert.equal(refused.outcome, 'failed');
  assert.match(refused.reason, /GET \/ failed after/);
});

test('command gate: a non-zero exit fails with the exit code and the output tail; the URLs are in its environment', async () => {
  const r = await runCommandGate('smoke', 'echo "testing $CUTOVER_PREVIEW_URL $CUTOVER_VERSION"; for i in $(seq 1 60); do echo "line $i"; done; echo "assertion failed: cart empty" >&2; exit 3', target(goodUrl, { liveUrl: 'http://live' }), 5_000);
  assert.equal(r.outcome, 'failed');
  assert.equal(r.values.exitCode, 3);
  assert.match(r.reason, /^smoke: `.*` exited with code 3 after [\d.]+ms; last output: assertion failed: cart empty$/);
  const lines = r.output!.split('\n');
  assert.equal(lines.length, 40, 'the tail keeps the last 40 lines');
  assert.equal(lines.at(-1), 'assertion failed: cart empty');
  assert.ok(!r.output!.includes(`testing ${goodUrl} v2`), 'the head was dropped');
  const env = await runCommandGate('env', 'test "$CUTOVER_PREVIEW_URL" = "$X_URL" && test "$CUTOVER_LIVE_URL" = http://live && test "$CUTOVER_VERSION" = v2 && test -z "$CUTOVER_TOKEN" && pwd', target(goodUrl, { liveUrl: 'http://live' }), 5_000, { PATH: process.env.PATH, X_URL: goodUrl });
  assert.equal(env.outcome, 'passed', env.reason);
  assert.equal(env.output, tmp, 'it runs in the release directory');
});

test('command gate: at the timeout the whole process group is killed and the output so far is kept', async () => {
  const pidFile = path.join(tmp, 'grandchild.pid');
  const t0 = Date.now();
  const r = await runCommandGate('suite', `echo starting suite; sleep 30 & echo $! > ${pidFile}; echo waiting; wait`, target(goodUrl), 400);
  assert.ok(Date.now() - t0 < 3_000, 'it did not wait for the sleep');
  assert.equal(r.outcome, 'failed');
  assert.equal(r.values.timedOut, true);
  assert.match(r.reason, /^suite: `.*` timed out after 400ms and was killed; last output: waiting$/);
  assert.equal(r.output, 'starting suite\nwaiting');
  const pid = Number(readFileSync(pidFile, 'utf8'));
  await sleep(100);
  assert.equal(existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z '), false, 'the grandchild (same group) is gone');
});

test('compare gate: same requests to both; preview error rate and p95 are held to live with a floor and a slack', async () => {
  // An additive p95 limit (live + 100 ms): halfway between identical and 200 ms slower, so neither
  // verdict depends on how busy the machine is (a stall slows live and preview alike; issue 16).
  const spec = (o: object = {}) => (gate({ name: 'compare', compare: { paths: ['/', '/version'], requests: 40, maxP95Ratio: 1, p95Slack: '100ms', ...o } }) as Extract<Gate, { kind: 'compare' }>).compare;
  const same = await runCompareGate('compare', spec(), target(goodUrl, { liveUrl: goodUrl, hasLive: true }));
  assert.equal(same.outcome, 'passed', same.reason);
  assert.match(same.reason, /error rate 0% vs live 0% \(limit 1%\)/, '0 vs 0 passes: the floor keeps it from dividing by zero');

  const errors = await runCompareGate('compare', spec(), target(brokenUrl, { liveUrl: goodUrl, hasLive: true }));
  assert.equal(errors.outcome, 'failed');
  assert.match(errors.reason, /error rate 25% vs live 0% \(limit 1%\)/);
  assert.equal((errors.values.preview as { errors: number }).errors, 10);

  const slower = await runCompareGate('compare', spec({ paths: ['/'], requests: 20 }), target(slowUrl, { liveUrl: goodUrl, hasLive: true }));
  assert.equal(slower.outcome, 'failed');
  assert.match(slower.reason, /p95 [\d.]+ms vs live [\d.]+ms \(limit [\d.]+ms\)/);

  const first = await runCompareGate('compare', spec(), target(goodUrl));
  assert.equal(first.outcome, 'skipped');
});

test('load gate: autocannon load; error rate and p99 against their thresholds', async () => {
  const ok = await runLoadGate('load', (gate({ name: 'load', load: { duration: '1s', connections: 4, maxErrorRate: '1%', maxP99: '300ms' } }) as Extract<Gate, { kind: 'load' }>).load, target(goodUrl));
  assert.equal(ok.outcome, 'passed', ok.reason);
  assert.ok((ok.values.requests as number) > 50);
  const bad = await runLoadGate('load', (gate({ name: 'load', load: { duration: '1s', connections: 4, maxErrorRate: '0.1%' } }) as Extract<Gate, { kind: 'load' }>).load, target(brokenUrl));
  assert.equal(bad.outcome, 'failed');
  assert.match(bad.reason, /error rate 50% > 0\.1%/);
});

test('runner: gates run in order, each recorded with values; the first failure stops the rest', async () => {
  const events: GateEvent[] = [];
  const gates = gatesSchema.parse([
    { name: 'version', http: { path: '/version', expect: { json: { version: '{version}' } } } },
    { name: 'fails', command: 'echo nope; exit 1' },
    { name: 'never', http: { path: '/' } },
  ]);
  const v = await runGates({ gates, target: target(goodUrl), phase: 'gates', warmup: { requests: 10, paths: ['/'], connections: 2, method: 'GET', headers: {} }, record: (e) => events.push(e) });
  assert.equal(v.outcome, 'failed');
  assert.equal(v.data.failed, 'fails');
  assert.match(v.summary, /^gate fails failed: `echo nope; exit 1` exited with code 1 after [\d.]+ms; last output: nope$/);
  assert.deepEqual(events.map((e) => [e.type, e.data.gate ?? null, e.data.outcome ?? null]), [
    ['warmup', null, null], ['gate', 'version', 'passed'], ['gate', 'fails', 'failed'], ['gate', 'never', 'skipped'],
  ]);
  assert.match(events[0].reason, /^warm-up: 10 request\(s\) to \/ in [\d.]+ms \(10 2xx, 0 5xx, 0 failed; not judged\)$/);
  assert.equal(events[2].data.output, 'nope');
  assert.deepEqual(events[2].data.thresholds, { exitCode: 0, timeoutMs: 300_000 });
});

test('parity: instance counts, environment variable names and release config files that differ are listed', () => {
  const a = mkdtempSync(path.join(tmp, 'rel-a-'));
  const b = mkdtempSync(path.join(tmp, 'rel-b-'));
  writeFileSync(path.join(a, 'package.json'), JSON.stringify({ engines: { node: '>=22' } }));
  writeFileSync(path.join(b, 'package.json'), JSON.stringify({ engines: { node: '>=24' } }));
  writeFileSync(path.join(a, '.env'), 'DB_URL=x\nexport FEATURE_X=1\n');
  writeFileSync(path.join(b, '.env'), 'DB_URL=y\n');
  writeFileSync(path.join(a, 'settings.yaml'), 'a: 1');
  const env: Record<number, string[]> = { 1: ['PATH', 'PORT', 'CUTOVER_COLOR', 'NEW_FLAG', 'DB_URL'], 2: ['PATH', 'PORT', 'CUTOVER_COLOR', 'DB_URL', 'OLD_FLAG'] };
  const r = parityReport(
    { color: 'green', version: 'v2', path: a, instances: 2, healthy: 2, pids: [1, null] },
    { color: 'blue', version: 'v1', path: b, instances: 3, healthy: 3, pids: [2] },
    (pid) => env[pid] ?? null,
  );
  assert.deepEqual(r.drift, [
    'instances: candidate runs 2, live runs 3',
    'healthy instances: candidate 2, live 3',
    'environment variables only in the candidate: NEW_FLAG',
    'environment variables only in live: OLD_FLAG',
    'config files only in the candidate: settings.yaml',
    '.env keys only in the candidate: FEATURE_X',
    'package.json engines: candidate {"node":">=22"}, live {"node":">=24"}',
  ]);
  const same = parityReport({ color: 'green', version: 'v2', path: b, instances: 1, healthy: 1, pids: [2] }, { color: 'blue', version: 'v1', path: b, instances: 1, healthy: 1, pids: [2] }, (pid) => env[pid]);
  assert.deepEqual(same.drift, []);
});
