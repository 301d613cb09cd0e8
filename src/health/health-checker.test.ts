import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { isCutoverError } from '../lib/errors.ts';
import { HealthChecker, type HealthCheckerOptions } from './health-checker.ts';

/** A real upstream whose answer the test controls. */
interface Upstream {
  port: number;
  status: number;
  delayMs: number;
  hang: boolean;
  requests: number;
  openConnections: number;
  maxOpenConnections: number;
  close(): Promise<void>;
}

const upstreams: Upstream[] = [];
const checkers: HealthChecker[] = [];

after(async () => {
  await Promise.all(checkers.map((c) => c.close()));
  await Promise.all(upstreams.map((u) => u.close()));
});

async function upstream(init: Partial<Pick<Upstream, 'status' | 'delayMs' | 'hang'>> = {}): Promise<Upstream> {
  const u = { status: 200, delayMs: 0, hang: false, requests: 0, openConnections: 0, maxOpenConnections: 0, ...init } as Upstream;
  const server = http.createServer((_req, res) => {
    u.requests++;
    if (u.hang) return;
    const status = u.status;
    setTimeout(() => res.writeHead(status).end('x'), u.delayMs);
  });
  server.on('connection', (s) => {
    u.openConnections++;
    u.maxOpenConnections = Math.max(u.maxOpenConnections, u.openConnections);
    s.on('close', () => u.openConnections--);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  u.port = (server.address() as net.AddressInfo).port;
  u.close = async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };
  upstreams.push(u);
  return u;
}

/** A port nothing listens on (bound once, then released). */
async function refusedPort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

function checker(opts: Partial<HealthCheckerOptions> = {}): HealthChecker {
  const c = new HealthChecker({ path: '/health', intervalMs: 20, timeoutMs: 500, ...opts });
  checkers.push(c);
  return c;
}

const target = (id: string, port: number) => ({ id, host: '127.0.0.1', port });

function nextChange(c: HealthChecker, id: string): Promise<{ healthy: boolean; reason: string; status: ReturnType<HealthChecker['status']> }> {
  return new Promise((resolve) => {
    const on = (changed: string, healthy: boolean, reason: string) => {
      if (changed !== id) return;
      c.off('change', on);
      resolve({ healthy, reason, status: c.status(id) }); // status as of the change itself
    };
    c.on('change', on);
  });
}

describe('health checker', () => {
  test('a new target turns healthy after healthyThreshold passes, and unhealthy after unhealthyThreshold failures', async () => {
    const u = await upstream();
    const c = checker({ healthyThreshold: 2, unhealthyThreshold: 3 });
    const up = nextChange(c, 'a');
    c.watch(target('a', u.port));
    assert.equal(c.isHealthy('a'), false, 'new targets start unhealthy');
    const became = await up;
    assert.equal(became.healthy, true);
    assert.equal(became.status?.consecutiveOk, 2);

    const down = nextChange(c, 'a');
    u.status = 503;
    const fell = await down;
    assert.equal(fell.healthy, false);
    assert.equal(fell.status?.consecutiveFail, 3, 'not before the third failure');
    assert.match(fell.reason, /HTTP 503/);
    assert.equal(c.status('a')?.lastError, 'HTTP 503');
  });

  test('reportFailure and markDown eject at once, until active checks pass again', async () => {
    const u = await upstream();
    const c = checker({ intervalMs: 50 });
    c.watch(target('a', u.port));
    await c.waitHealthy(['a'], 2_000);

    const events: Array<[boolean, string]> = [];
    c.on('change', (_id, healthy, reason) => events.push([healthy, reason]));
    c.reportFailure('a', 'connect ECONNREFUSED (router)');
    assert.equal(c.isHealthy('a'), false, 'immediately');
    assert.deepEqual(events, [[false, 'connect ECONNREFUSED (router)']]);
    assert.equal(c.status('a')?.ejectedUntilOk, true);
    c.reportFailure('a', 'again'); // repeated reports while ejected: no new event
    assert.equal(events.length, 1);

    await c.waitHealthy(['a'], 2_000);
    assert.equal(c.status('a')?.ejectedUntilOk, false);

    c.markDown('a', 'process exited (code 1)');
    assert.equal(c.isHealthy('a'), false);
    assert.equal(c.status('a')?.lastError, 'process exited (code 1)');
    await c.waitHealthy(['a'], 2_000);
  });

  test('a check already in flight at an ejection does not re-admit the instance', async () => {
    const u = await upstream({ delayMs: 200 });
    const c = checker({ intervalMs: 5, timeoutMs: 1_000 });
    c.watch(target('a', u.port));
    await c.waitHealthy(['a'], 2_000);
    await sleep(100); // the next check is now mid-flight
    const t0 = Date.now();
    c.reportFailure('a', 'reset by peer');
    await c.waitHealthy(['a'], 2_000);
    // Only a check started after the ejection counts: a whole 200 ms round trip.
    assert.ok(Date.now() - t0 >= 190, `re-admitted after ${Date.now() - t0}ms`);
  });

  test('waitHealthy rejects on timeout with the unhealthy ids and their last errors', async () => {
    const u = await upstream();
    const c = checker();
    c.watch(target('good', u.port));
    c.watch(target('bad', await refusedPort()));
    await c.waitHealthy(['good'], 2_000);
    const t0 = Date.now();
    await assert.rejects(c.waitHealthy(['good', 'bad', 'unknown'], 300), (err) => {
      assert.ok(isCutoverError(err, 'CUTOVER_ERR_HEALTH_TIMEOUT'));
      const unhealthy = err.details?.unhealthy as Array<{ id: string; lastError: string }>;
      assert.deepEqual(unhealthy.map((x) => x.id), ['bad', 'unknown']);
      assert.match(unhealthy[0].lastError, /ECONNREFUSED/);
      assert.equal(unhealthy[1].lastError, 'not watched');
      assert.match(err.message, /bad \(.*ECONNREFUSED/);
      return true;
    });
    assert.ok(Date.now() - t0 >= 290);
  });

  test('waitHealthy rejects when aborted, and resolves when a late target comes up', async () => {
    const c = checker();
    const u = await upstream({ status: 500 });
    c.watch(target('late', u.port));
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('deployment aborted')), 50);
    await assert.rejects(c.waitHealthy(['late'], 5_000, ac.signal), (err) => {
      assert.ok(isCutoverError(err, 'CUTOVER_ERR_HEALTH_TIMEOUT'));
      assert.equal(err.details?.aborted, true);
      return true;
    });
    const waiting = c.waitHealthy(['late'], 2_000);
    await sleep(60);
    u.status = 204;
    await waiting;
  });

  test('an answer slower than timeoutMs fails the check, and checks of one target never overlap', async () => {
    const u = await upstream({ hang: true });
    const c = checker({ intervalMs: 5, timeoutMs: 150, healthyThreshold: 1 });
    c.watch(target('slow', u.port));
    await sleep(700);
    const s = c.status('slow');
    assert.equal(s?.healthy, false);
    assert.match(s?.lastError ?? '', /no answer within 150ms/);
    assert.ok((s?.consecutiveFail ?? 0) >= 2 && (s?.consecutiveFail ?? 0) <= 5, `fails: ${s?.consecutiveFail}`);
    assert.equal(u.maxOpenConnections, 1, 'one check at a time, each on a fresh connection that is closed');
  });

  test('assumeHealthy starts healthy; unwatch and close stop the checking', async () => {
    const u = await upstream();
    const c = checker();
    c.watch(target('adopted', u.port), { assumeHealthy: true });
    assert.equal(c.isHealthy('adopted'), true);
    await sleep(100);
    assert.ok(u.requests > 0);
    c.unwatch('adopted');
    assert.equal(c.status('adopted'), undefined);
    assert.equal(c.isHealthy('adopted'), false);
    await sleep(30); // let a check in flight at unwatch finish
    const seen = u.requests;
    await sleep(100);
    assert.equal(u.requests, seen);

    c.watch(target('x', u.port));
    await c.close();
    const atClose = u.requests;
    await sleep(100);
    assert.ok(u.requests <= atClose + 1);
  });
});
