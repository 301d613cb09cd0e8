/**
 * The router process's own rules, against real sockets: it applies only newer revisions (a late
 * or repeated table never moves traffic back), never an empty table over a real one, answers
 * every table with an acknowledgement, relays request records, and a newer RouterProcess on the
 * same stateDir takes the table and the listeners over while the old one retires.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { silentLogger } from '../lib/logger.ts';
import { pickFreePort } from '../environments/ports.ts';
import { RouterProcess, type RouterSettings } from './router-process.ts';
import { controlSocketPath, readMessages, send, type FromRouter } from './control-protocol.ts';
import { startUpstream } from '../../test/support/router.ts';
import type { RouteTable } from './route-table.ts';

async function settings(stateDir: string): Promise<RouterSettings> {
  const port = await pickFreePort('127.0.0.1', new Set());
  return {
    app: 't', id: 'r-test', stateDir, version: '0', listen: { host: '127.0.0.1', port }, preview: null,
    drainTimeoutMs: 1_000, connectTimeoutMs: 1_000, responseTimeoutMs: 5_000,
    limits: { maxHeaderBytes: 16_384, maxHeaderCount: 100, maxUrlBytes: 8_192, maxBodyBytes: 0, headersTimeoutMs: 5_000, requestTimeoutMs: 10_000 },
    trustedProxies: [], tls: null,
    health: { path: '/health', intervalMs: 200, timeoutMs: 500, healthyThreshold: 1, unhealthyThreshold: 2 },
  };
}

function controller(socketPath: string): Promise<{ next: (t: FromRouter['t']) => Promise<FromRouter>; seen: FromRouter[]; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    const seen: FromRouter[] = [];
    const waiters: { t: string; resolve: (m: FromRouter) => void }[] = [];
    readMessages<FromRouter>(socket, (m) => {
      seen.push(m);
      for (const w of [...waiters]) if (w.t === m.t) { waiters.splice(waiters.indexOf(w), 1); w.resolve(m); }
    });
    socket.once('error', reject);
    socket.once('connect', () => resolve({
      seen, socket,
      next: (t) => new Promise((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`no ${t} message`)), 5_000);
        waiters.push({ t, resolve: (m) => { clearTimeout(timer); res(m); } });
      }),
    }));
  });
}

function table(revision: number, color: 'blue' | 'green' | null, port: number): RouteTable {
  return { revision, live: color === null ? null : { color, version: `v-${color}`, targets: [{ id: `${color}-0`, host: '127.0.0.1', port }] }, preview: null };
}

test('a router process applies newer revisions only, never an empty table over a real one, and acknowledges each', { timeout: 30_000 }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cutover-rp-'));
  const blue = await startUpstream('blue', 0);
  const green = await startUpstream('green', 0);
  const rp = await RouterProcess.start(await settings(dir), silentLogger);
  t.after(async () => { await rp.close(); await blue.close(); await green.close(); rmSync(dir, { recursive: true, force: true }); });
  const c = await controller(controlSocketPath(dir));
  const hello = await c.next('hello');
  assert.equal(hello.t === 'hello' && hello.table.revision, 0);
  const url = `http://127.0.0.1:${rp.router.addresses().live.port}/`;

  send(c.socket, { t: 'table', table: table(5, 'blue', blue.port) });
  const a5 = await c.next('applied');
  assert.equal(a5.t === 'applied' && a5.revision, 5);
  assert.match(await (await fetch(url)).text(), /^blue/);

  // A late revision 4 (green) must not move traffic back; the router repeats what it serves.
  send(c.socket, { t: 'table', table: table(4, 'green', green.port) });
  send(c.socket, { t: 'table', table: table(5, 'blue', blue.port) });
  const again = await c.next('applied');
  assert.equal(again.t === 'applied' && again.revision, 5);
  assert.equal(rp.router.table().revision, 5);
  assert.match(await (await fetch(url)).text(), /^blue/);

  // Never an empty table over one that routes somewhere.
  assert.equal(rp.apply(table(6, null, 0)), false);
  assert.equal(rp.router.table().live?.color, 'blue');

  send(c.socket, { t: 'table', table: table(7, 'green', green.port) });
  await c.next('applied');
  assert.match(await (await fetch(url)).text(), /^green/);
  // The requests come back as records (batched), for the controller's stats and hooks.
  const stats = await c.next('stats');
  const all = c.seen.filter((m) => m.t === 'stats').flatMap((m) => (m.t === 'stats' ? m.records : []));
  assert.ok(stats.t === 'stats' && all.length >= 3, `records relayed: ${all.length}`);
  c.socket.destroy();
});

test('a newer router process on the same stateDir takes the table and the listeners; the old one retires', { timeout: 30_000 }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cutover-rp-'));
  const blue = await startUpstream('blue', 0);
  const s = await settings(dir);
  const old = await RouterProcess.start(s, silentLogger);
  let next: RouterProcess | null = null;
  t.after(async () => { await old.close(); await next?.close(); await blue.close(); rmSync(dir, { recursive: true, force: true }); });
  old.apply(table(9, 'blue', blue.port));
  const exited = new Promise<string>((resolve) => old.once('exit', resolve));
  next = await RouterProcess.start(s, silentLogger);
  assert.equal(next.router.table().revision, 9, 'the newer router serves the table it was handed');
  assert.match(await exited, /newer router/);
  assert.match(await (await fetch(`http://127.0.0.1:${s.listen.port}/`)).text(), /^blue/);
  // The control socket is the newer router's now.
  const c = await controller(controlSocketPath(dir));
  const hello = await c.next('hello');
  assert.equal(hello.t === 'hello' && hello.pid, process.pid);
  assert.equal(hello.t === 'hello' && hello.table.revision, 9);
  c.socket.destroy();
});
