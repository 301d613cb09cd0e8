/**
 * Descriptor exhaustion (issue #15): 10,000 slow-body clients against a real `cutover up` whose
 * descriptor limit is 3,000 (started through `prlimit`). The router takes as many client
 * connections as the limit allows after its reserve (router.maxConnections: auto) and refuses the
 * rest at accept; meanwhile requests on already-open keep-alive connections all succeed, health
 * checks keep passing (no failover, no 503), the admin API answers, and the daemon never reaches
 * its limit. Before: the slow clients took every descriptor and everyone got 502s.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import path from 'node:path';
import { BIN, SHOP_V1, TEST_TOKEN, cli, configYaml, freePorts, instancesOf, killAll, tempDir, waitFor, writeConfig } from './helpers.ts';

const SLOW_CLIENTS = 10_000;
const NOFILE = 3_000;

function getOn(agent: Agent, port: number, p: string): Promise<number> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: p, agent, timeout: 5_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

test(`${SLOW_CLIENTS} slow-body clients against a daemon limited to ${NOFILE} descriptors: the excess is refused at accept, live keep-alive requests all succeed, health and admin stay up`, { timeout: 180_000 }, async () => {
  const { dir, cleanup } = tempDir('cutover-fds-');
  const stateDir = path.join(dir, '.cutover');
  const ports = await freePorts();
  writeConfig(dir, configYaml(ports, { instances: 1 }));
  const child = spawn('prlimit', [`--nofile=${NOFILE}:${NOFILE}`, process.execPath, BIN, 'up'], { cwd: dir, env: { ...process.env, CUTOVER_TOKEN: TEST_TOKEN, CUTOVER_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise((r) => child.on('exit', r));
  const slow: Socket[] = [];
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  let running = false;
  try {
    await waitFor(() => out.includes('is up'), { what: 'cutover up', timeoutMs: 20_000 });
    const daemonPid = child.pid as number; // prlimit execs the command: same pid
    assert.match(out, /"maxConnections":\{"live":1012,"preview":113\}/, 'the connection limits worked out from the descriptor limit');
    assert.equal((await cli(['deploy', 'v1', '--path', SHOP_V1], { cwd: dir })).code, 0);

    // Four keep-alive connections, open before the flood, carry the live traffic throughout.
    for (let i = 0; i < 8; i++) assert.equal(await getOn(agent, ports.live, '/'), 200);
    let ok = 0;
    const failed: number[] = [];
    running = true;
    const loops = Array.from({ length: 4 }, async () => {
      while (running) {
        const s = await getOn(agent, ports.live, '/');
        if (s === 200) ok++; else failed.push(s);
      }
    });

    // The flood: heads of 1 MB POSTs, a few body bytes, then silence (held open by the test).
    let refused = 0;
    let maxFds = 0;
    for (let batch = 0; batch < SLOW_CLIENTS / 500; batch++) {
      await Promise.all(Array.from({ length: 500 }, () => new Promise<void>((resolve) => {
        const s = connect(ports.live, '127.0.0.1');
        slow.push(s);
        s.on('error', () => {});
        s.once('close', () => { refused++; resolve(); });
        s.once('connect', () => {
          s.write('POST /echo HTTP/1.1\r\nhost: shop\r\ncontent-type: text/plain\r\ncontent-length: 1000000\r\n\r\nslow');
          setTimeout(resolve, 20);
        });
      })));
      maxFds = Math.max(maxFds, openFds(daemonPid));
    }
    await new Promise((r) => setTimeout(r, 1_000));
    maxFds = Math.max(maxFds, openFds(daemonPid));
    const held = slow.filter((s) => !s.destroyed).length;

    // While they hold their connections: the admin API answers and reports healthy instances.
    const status = JSON.parse((await cli(['status', '--json'], { cwd: dir })).stdout) as { live: { version: string; healthy: number } };
    assert.equal(status.live.version, 'v1');
    assert.equal(status.live.healthy, 1, 'health checks kept passing');
    const more = ok;
    await waitFor(() => ok >= more + 50, { what: '50 more live requests during the flood', timeoutMs: 20_000 });
    running = false;
    await Promise.all(loops);

    assert.deepEqual(failed, [], `live requests on open connections: ${ok} ok, failed: ${failed.slice(0, 10).join(',')}`);
    assert.ok(held >= 900 && held <= 1_012, `the router held ${held} slow clients (limit 1012 minus the 4 keep-alive connections)`);
    assert.ok(refused >= SLOW_CLIENTS - 1_012, `${refused} connections refused at the limit`);
    assert.ok(maxFds < NOFILE - 200, `the daemon used at most ${maxFds} of ${NOFILE} descriptors`);
    assert.match(out, /connection limit reached/, 'the refusals are logged');
    assert.doesNotMatch(out, /"event":"failover"|every instance of live/, 'no failover, no live-down');

    // Once the slow clients leave, new connections are served again.
    for (const s of slow) s.destroy();
    await waitFor(async () => (await getOn(new Agent(), ports.live, '/')) === 200, { what: 'a new connection served', timeoutMs: 10_000 });
  } finally {
    running = false;
    for (const s of slow) s.destroy();
    agent.destroy();
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
    child.kill('SIGKILL');
    killAll(instancesOf(stateDir));
    cleanup();
  }
});
