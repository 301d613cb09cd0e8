/**
 * The event stream (GET /api/v1/events, server-sent events) and the structured log: events in
 * order as they happen, resumption after a disconnect with Last-Event-ID, one JSON log line per
 * event carrying colour, version and deployment.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { Daemon } from '../src/daemon/daemon.ts';
import { parseConfig } from '../src/config/load.ts';
import { createLogger } from '../src/lib/logger.ts';
import type { EventRecord } from '../src/store/types.ts';
import { TEST_TOKEN, configYaml, freePorts, tempDir, waitFor } from './helpers.ts';

let daemon: Daemon;
let cleanup: () => void;
const logs: string[] = [];

before(async () => {
  const t = tempDir();
  cleanup = t.cleanup;
  const config = parseConfig(configYaml(await freePorts()), { file: 'cutover.yaml', baseDir: t.dir });
  const logger = createLogger({ level: 'info', destination: new Writable({ write(chunk, _e, cb) { logs.push(...String(chunk).split('\n').filter(Boolean)); cb(); } }) });
  daemon = await Daemon.start(config, { logger, env: { CUTOVER_TOKEN: TEST_TOKEN } });
});

after(async () => {
  await daemon?.stop({ stopInstances: true });
  cleanup?.();
});

/** Open the stream; collects events (with their SSE ids) until close(). */
async function openStream(headers: Record<string, string> = {}, query = '') {
  const ac = new AbortController();
  const res = await request(`${daemon.adminUrl()}/api/v1/events${query}`, { headers: { authorization: `Bearer ${TEST_TOKEN}`, ...headers }, signal: ac.signal, bodyTimeout: 0 });
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^text\/event-stream/);
  const got: { id: number; type: string; event: EventRecord }[] = [];
  let buf = '';
  const reading = (async () => {
    try {
      for await (const chunk of res.body) {
        buf += String(chunk);
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const f = Object.fromEntries(block.split('\n').filter((l) => !l.startsWith(':')).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]));
          if (f.id !== undefined) got.push({ id: Number(f.id), type: f.event, event: JSON.parse(f.data) as EventRecord });
        }
      }
    } catch { /* aborted */ }
  })();
  return { got, close: async () => { ac.abort(); await reading; } };
}

function record(n: number, from: number): void {
  for (let i = 0; i < n; i++) {
    daemon.controller.record({ type: 'test.tick', actor: 'test', reason: `tick ${from + i}`, color: 'blue', version: 'v1', deployment: 'd-test', data: { i: from + i } });
  }
}

test('events arrive in order as they happen, each with its seq as the SSE id', async () => {
  const s = await openStream({}, '?backlog=false');
  record(25, 0);
  await waitFor(() => s.got.length >= 25, { what: '25 events' });
  await s.close();
  assert.deepEqual(s.got.map((g) => g.event.data?.i), Array.from({ length: 25 }, (_, i) => i));
  for (const g of s.got) {
    assert.equal(g.id, g.event.seq);
    assert.equal(g.type, 'test.tick');
  }
  assert.ok(s.got.every((g, k) => k === 0 || g.id > s.got[k - 1].id), 'strictly increasing ids');
});

test('a client that reconnects with Last-Event-ID gets exactly what it missed, in order', async () => {
  const first = await openStream({}, '?backlog=false');
  record(10, 100);
  await waitFor(() => first.got.length >= 10, { what: 'first 10' });
  await first.close();
  const lastSeen = first.got[9].id;
  record(15, 110); // while disconnected
  const second = await openStream({ 'last-event-id': String(lastSeen) });
  await waitFor(() => second.got.length >= 15, { what: 'the 15 missed' });
  record(5, 125); // and then live again
  await waitFor(() => second.got.length >= 20, { what: '5 live after the backlog' });
  await second.close();
  assert.deepEqual(second.got.map((g) => g.event.data?.i), Array.from({ length: 20 }, (_, i) => 110 + i), 'no gap, no duplicate');
  assert.equal(second.got[0].id, lastSeen + 1);
});

test('every event is one JSON log line with colour, version and deployment', () => {
  const line = logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.event === 'test.tick' && l.msg === 'tick 3');
  assert.ok(line, 'logged');
  assert.equal(line.color, 'blue');
  assert.equal(line.version, 'v1');
  assert.equal(line.deployment, 'd-test');
  assert.equal(line.actor, 'test');
  assert.equal(typeof line.time, 'string');
});
