/**
 * Soak test (issue #6; not part of CI): a real `cutover up` with the process provider, a switch
 * every `--every` seconds for `--minutes` minutes, under steady load of keep-alive GETs, POSTs with
 * a body checked byte for byte, fresh connections (one request each) and WebSockets echoing
 * messages. Every request is counted; the daemon's memory (RSS) and open file descriptors
 * (/proc/<pid>/fd) are sampled throughout.
 *
 *   node scripts/soak.ts [--minutes 30] [--every 10] [--mode deploy|rollback] [--rate 200]
 *                        [--connections 16] [--fresh 4] [--websockets 8] [--warmup 60] [--json FILE]
 *
 * --mode deploy (default): each switch is a full deployment of the next version (provision,
 * health, switch, drain; the old standby is replaced). --mode rollback: each switch is an instant
 * rollback between two warm colours. Exit code 0 when no request failed and RSS grew ≤ 10 % after
 * the warm-up (`--warmup`, default 60 s: the heap first grows to its working size, ~40 s here).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { BIN, binNodeFlags, withCompileCache } from '../bench/procs.ts';
import { randomBytes, createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http, { request as httpRequest } from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Pool, request } from 'undici';
import WebSocket from 'ws';

const TOKEN = `soak-${randomBytes(8).toString('hex')}`;

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    every: { type: 'string', default: '10' },
    mode: { type: 'string', default: 'deploy' },
    rate: { type: 'string', default: '200' },
    connections: { type: 'string', default: '16' },
    fresh: { type: 'string', default: '4' },
    websockets: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '60' },
    json: { type: 'string' },
  },
});
const MINUTES = Number(args.minutes);
const EVERY_MS = Number(args.every) * 1_000;
const MODE = args.mode === 'rollback' ? 'rollback' : 'deploy';
const RATE = Number(args.rate); // keep-alive requests per second, all connections together
const CONNECTIONS = Number(args.connections);
const FRESH = Number(args.fresh); // concurrent fresh-connection loops
const WEBSOCKETS = Number(args.websockets);
/** Seconds after which memory is taken as the baseline: the heap grows to its working size first. */
const WARMUP_S = Number(args.warmup);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ── the release under test: GET /, POST /echo, WebSocket echo, /health ──
const wsPath = createRequire(import.meta.url).resolve('ws');
const RELEASE = `'use strict';
const http = require('node:http');
const { WebSocketServer } = require(${JSON.stringify(wsPath)});
const version = process.env.CUTOVER_VERSION, color = process.env.CUTOVER_COLOR;
const server = http.createServer((req, res) => {
  if (req.url === '/health') return res.end('ok');
  if (req.url === '/echo' && req.method === 'POST') { res.writeHead(200, { 'content-type': 'application/octet-stream' }); return void req.pipe(res); }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ version, color }));
});
server.keepAliveTimeout = 65000;
new WebSocketServer({ server }).on('connection', (ws) => ws.on('message', (d) => ws.send(d)));
server.listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => { server.closeAllConnections(); server.close(() => process.exit(0)); });
`;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = http.createServer();
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
  });
}

interface Sample { t: number; rssMiB: number; fds: number; requests: number; failed: number }

function procFigures(pid: number): { rssMiB: number; fds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { rssMiB: rssKb / 1024, fds: readdirSync(`/proc/${pid}/fd`).length };
}

async function main(): Promise<number> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cutover-soak-'));
  const release = path.join(dir, 'release');
  mkdirSync(release);
  writeFileSync(path.join(release, 'server.cjs'), RELEASE);
  const ports = { live: await freePort(), preview: await freePort(), admin: await freePort() };
  writeFileSync(path.join(dir, 'cutover.yaml'), [
    'app: soak',
    `router: { listen: 127.0.0.1:${ports.live}, preview: 127.0.0.1:${ports.preview}, drainTimeout: 5s }`,
    `admin: { listen: 127.0.0.1:${ports.admin} }`,
    'environments:',
    '  provider: process',
    '  process: { command: node server.cjs, instances: 2, startTimeout: 20s, stopTimeout: 3s }',
    'health: { interval: 200ms, timeout: 1s }',
    'standby: { keepFor: 1h }',
  ].join('\n'));
  // Started as `cutover` starts itself (the bin's Node flags, the compile cache): memory is measured.
  const daemon: ChildProcess = spawn(process.execPath, [...binNodeFlags(BIN), BIN, 'up'], { cwd: dir, env: withCompileCache({ ...process.env, CUTOVER_TOKEN: TOKEN, CUTOVER_LOG_LEVEL: 'warn' }), stdio: ['ignore', 'pipe', 'pipe'] });
  let daemonLog = '';
  daemon.stdout!.on('data', (d: Buffer) => { daemonLog += d.toString(); });
  daemon.stderr!.on('data', (d: Buffer) => { daemonLog += d.toString(); });
  const admin = `http://127.0.0.1:${ports.admin}/api/v1`;
  const live = `http://127.0.0.1:${ports.live}`;
  const api = async (method: 'GET' | 'POST', p: string, body?: unknown) => {
    const r = await request(`${admin}${p}`, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    const json = (await r.body.json()) as Record<string, unknown>;
    if (r.statusCode >= 400) throw new Error(`${method} ${p}: ${r.statusCode} ${JSON.stringify(json)}`);
    return json;
  };
  for (let i = 0; !daemonLog.includes('is up'); i++) {
    if (i > 200) throw new Error(`daemon did not start:\n${daemonLog}`);
    await sleep(100);
  }
  let version = 0;
  const deploy = async () => {
    version++;
    const { deployment } = (await api('POST', '/deployments', { version: `v${version}`, path: release })) as { deployment: { id: string } };
    for (;;) {
      const d = (await api('GET', `/deployments/${deployment.id}`)) as { deployment: { status: string; error: unknown } };
      if (d.deployment.status === 'succeeded') return;
      if (!['running', 'awaiting-promotion'].includes(d.deployment.status)) throw new Error(`deploy v${version}: ${JSON.stringify(d.deployment)}`);
      await sleep(100);
    }
  };
  await deploy();
  await deploy();

  // ── load ──
  const counts = { get: 0, post: 0, fresh: 0, failed: 0, wsMessages: 0, wsReconnects: 0, wsLost: 0 };
  const failures = new Map<string, number>();
  const fail = (what: string) => { counts.failed++; failures.set(what, (failures.get(what) ?? 0) + 1); };
  let stop = false;
  const pool = new Pool(live, { connections: CONNECTIONS, pipelining: 1 });
  const payload = randomBytes(16 * 1024);
  const payloadHash = createHash('sha256').update(payload).digest('hex');
  const gap = (CONNECTIONS / RATE) * 1_000;
  const keepAlive = async (i: number) => {
    for (let n = 0; !stop; n++) {
      const t0 = performance.now();
      try {
        if ((n + i) % 4 === 0) {
          const r = await pool.request({ path: '/echo', method: 'POST', body: payload, headers: { 'content-type': 'application/octet-stream' } });
          const got = Buffer.from(await r.body.arrayBuffer());
          if (r.statusCode !== 200) fail(`POST ${r.statusCode}`);
          else if (createHash('sha256').update(got).digest('hex') !== payloadHash) fail('POST body mismatch');
          else counts.post++;
        } else {
          const r = await pool.request({ path: '/', method: 'GET' });
          const text = await r.body.text();
          if (r.statusCode !== 200) fail(`GET ${r.statusCode} ${text.trim().slice(0, 80)}`);
          else counts.get++;
        }
      } catch (err) {
        fail(`keep-alive ${(err as { code?: string }).code ?? (err as Error).message}`);
      }
      const left = gap - (performance.now() - t0);
      if (left > 0) await sleep(left);
    }
  };
  const fresh = async () => {
    while (!stop) {
      await new Promise<void>((resolve) => {
        const req = httpRequest(`${live}/`, { agent: false, headers: { connection: 'close' } }, (res) => {
          res.resume();
          res.on('end', () => { if (res.statusCode === 200) counts.fresh++; else fail(`fresh ${res.statusCode}`); resolve(); });
          res.on('error', () => { fail('fresh response error'); resolve(); });
        });
        req.on('error', (err) => { fail(`fresh ${(err as { code?: string }).code ?? err.message}`); resolve(); });
        req.end();
      });
      await sleep(20);
    }
  };
  const websocket = async () => {
    while (!stop) {
      await new Promise<void>((resolve) => {
        const ws = new WebSocket(`${live.replace('http', 'ws')}/ws`);
        let outstanding = 0;
        let timer: NodeJS.Timeout | undefined;
        ws.on('open', () => {
          timer = setInterval(() => {
            if (stop) { ws.close(1000); return; }
            outstanding++;
            ws.send(`ping ${Date.now()}`);
          }, 250);
        });
        ws.on('message', () => { outstanding--; counts.wsMessages++; });
        ws.on('error', () => { /* close follows */ });
        ws.on('close', (code) => {
          clearInterval(timer);
          // A drain timeout closes a WebSocket of the old colour (1006): clients reconnect. Messages
          // sent just before that have no answer; they are counted apart, not as failed requests.
          if (!stop) { counts.wsReconnects++; counts.wsLost += Math.max(0, outstanding); if (code !== 1006 && code !== 1005) fail(`websocket closed ${code}`); }
          resolve();
        });
      });
    }
  };
  const loops = [
    ...Array.from({ length: CONNECTIONS }, (_, i) => keepAlive(i)),
    ...Array.from({ length: FRESH }, fresh),
    ...Array.from({ length: WEBSOCKETS }, websocket),
  ];

  // ── switches and samples ──
  const pid = daemon.pid!;
  await sleep(5_000); // warm-up: pools, JIT, WebSockets open
  const samples: Sample[] = [];
  const sample = () => {
    const f = procFigures(pid);
    samples.push({ t: Math.round((Date.now() - t0) / 1000), rssMiB: Math.round(f.rssMiB * 10) / 10, fds: f.fds, requests: counts.get + counts.post + counts.fresh, failed: counts.failed });
  };
  const t0 = Date.now();
  sample();
  const end = t0 + MINUTES * 60_000;
  let switches = 0;
  let switchErrors = 0;
  const switchMs: number[] = [];
  while (Date.now() < end) {
    await sleep(Math.min(EVERY_MS, Math.max(0, end - Date.now())));
    if (Date.now() >= end) break;
    const s0 = performance.now();
    try {
      if (MODE === 'deploy') await deploy();
      else await api('POST', '/rollback', { reason: 'soak' });
      switches++;
      switchMs.push(performance.now() - s0);
    } catch (err) {
      switchErrors++;
      process.stderr.write(`switch failed: ${(err as Error).message}\n`);
    }
    sample();
    const last = samples[samples.length - 1];
    process.stderr.write(`t=${last.t}s switches=${switches} requests=${last.requests} failed=${last.failed} rss=${last.rssMiB}MiB fds=${last.fds} ws=${counts.wsMessages}/${counts.wsReconnects}\n`);
  }
  stop = true;
  await Promise.all(loops);
  await pool.close();
  sample();
  daemon.kill('SIGTERM');
  await new Promise((r) => daemon.once('exit', r));
  rmSync(dir, { recursive: true, force: true });

  const first = samples[0];
  const lastS = samples[samples.length - 1];
  const baseline = samples.find((s) => s.t >= Math.min(WARMUP_S, lastS.t / 2)) ?? first;
  const peak = Math.max(...samples.map((s) => s.rssMiB));
  const growth = (lastS.rssMiB - baseline.rssMiB) / baseline.rssMiB;
  const result = {
    minutes: MINUTES, everyS: EVERY_MS / 1000, mode: MODE, switches, switchErrors,
    switchMsMedian: Math.round(switchMs.sort((a, b) => a - b)[Math.floor(switchMs.length / 2)] ?? 0),
    requests: { get: counts.get, post: counts.post, fresh: counts.fresh, total: counts.get + counts.post + counts.fresh },
    failed: counts.failed, failures: Object.fromEntries(failures),
    websockets: { messages: counts.wsMessages, reconnects: counts.wsReconnects, unansweredAtClose: counts.wsLost },
    rssMiB: { start: first.rssMiB, afterWarmup: baseline.rssMiB, warmupS: baseline.t, end: lastS.rssMiB, peak, growthAfterWarmupPct: Math.round(growth * 1000) / 10, growthFromStartPct: Math.round(((lastS.rssMiB - first.rssMiB) / first.rssMiB) * 1000) / 10 },
    fds: { start: first.fds, end: lastS.fds, peak: Math.max(...samples.map((s) => s.fds)) },
    samples,
  };
  if (args.json) writeFileSync(args.json, `${JSON.stringify(result, null, 2)}\n`);
  const { samples: _s, ...summary } = result;
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  return counts.failed === 0 && switchErrors === 0 && growth <= 0.1 ? 0 : 1;
}

main().then((code) => process.exit(code), (err: unknown) => { process.stderr.write(`${(err as Error).stack}\n`); process.exit(2); });
