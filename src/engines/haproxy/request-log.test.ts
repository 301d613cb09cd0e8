/**
 * HAProxy request-log lines (REQUEST_LOG_FORMAT) as the builtin router would have counted them:
 * listener and colour from the backend, proxy error kinds from the termination state, 499 for a
 * client that left, a WebSocket's latency from its handshake.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRequestLine } from './request-log.ts';

test('a plain request: listener and colour from the backend name', () => {
  assert.deepEqual(parseRequestLine('live_green green-0 200 ---- 3 GET 2 -'), { listener: 'live', color: 'green', server: 'green-0', method: 'GET', status: 200, durationMs: 3, weight: 1, answered: true });
  assert.equal(parseRequestLine('preview_blue blue-1 404 ---- 1 POST 1')?.listener, 'preview');
});

test('the weight is the 1-in-N sampling the line was logged under; a request with no answer is flagged', () => {
  assert.equal(parseRequestLine('live_green green-0 200 ---- 3 GET 2 250')?.weight, 250);
  assert.equal(parseRequestLine('live_green green-0 200 ---- 3 GET 2 1')?.weight, 1);
  assert.equal(parseRequestLine('live_green green-0 502 SH-- 3 GET -1 -')?.weight, 1, 'errors are never sampled');
  assert.equal(parseRequestLine('live_green green-0 200 ---- 3 GET 2 x')?.weight, 1);
  const gone = parseRequestLine('live_blue blue-0 -1 CH-- 12 GET -1 -')!;
  assert.equal(gone.answered, false, 'no answer: not in HAProxy\'s response counters');
  assert.equal(parseRequestLine('live_blue blue-0 503 SC-- 5 GET -1 -')?.answered, true);
});

test('requests answered by no colour (no route yet) are not per-colour statistics', () => {
  assert.equal(parseRequestLine('none_live <NOSRV> 503 PR-- 0 GET -1'), null);
  assert.equal(parseRequestLine('garbage'), null);
});

test('proxy error kinds from the termination state', () => {
  assert.equal(parseRequestLine('live_blue <NOSRV> 503 SC-- 0 GET -1')?.error, 'no-healthy');
  assert.equal(parseRequestLine('live_blue blue-0 503 SC-- 5 GET -1')?.error, 'connect');
  assert.equal(parseRequestLine('live_blue blue-0 502 SH-- 5 GET -1')?.error, 'reset');
  const t = parseRequestLine('live_blue blue-0 504 sH-- 60000 GET -1')!;
  assert.equal(t.error, 'timeout');
  assert.equal(t.status, 504);
});

test('a client that left before its answer counts as 499, like the builtin router', () => {
  assert.equal(parseRequestLine('live_blue blue-0 -1 CH-- 12 GET -1')?.status, 499);
  assert.equal(parseRequestLine('live_blue blue-0 200 CD-- 12 GET 3')?.status, 200, 'a cut body after the head keeps its status');
});

test("a WebSocket's latency is its handshake, not its whole life", () => {
  const ws = parseRequestLine('live_blue blue-0 101 ---- 93000 GET 4')!;
  assert.equal(ws.status, 101);
  assert.equal(ws.durationMs, 4);
});

test('the config refuses what the HAProxy engine and worker threads cannot do, naming the field', async () => {
  const { parseConfig } = await import('../../config/load.ts');
  const base = 'environments: { provider: static, static: { blue: [127.0.0.1:1], green: [127.0.0.1:2] } }\n';
  const refused = (yaml: string, field: RegExp) => assert.throws(() => parseConfig(base + yaml, { file: 'cutover.yaml', baseDir: '/tmp' }), field);
  refused('router: { engine: haproxy, workers: 2 }\n', /router\.workers/);
  refused('router: { engine: haproxy }\nswitch: { steps: [10%, 100%] }\n', /switch\.steps/);
  refused('router: { engine: haproxy, previewAccess: { trusted: [10.0.0.0/8] } }\n', /router\.previewAccess/);
  refused('router: { workers: 2 }\ngates: [{ name: shadow, mirror: { sample: 10% } }]\n', /gates/);
  assert.equal(parseConfig(`${base}router: { engine: haproxy, haproxy: { logSample: 10 } }\n`, { file: 'cutover.yaml', baseDir: '/tmp' }).router.haproxy.logSample, 10);
  assert.equal(parseConfig(`${base}router: { engine: haproxy }\n`, { file: 'cutover.yaml', baseDir: '/tmp' }).router.haproxy.logSample, 'auto');
  assert.equal(parseConfig(`${base}router: { workers: auto }\n`, { file: 'cutover.yaml', baseDir: '/tmp' }).router.workers, 'auto');
});
