/**
 * HTTP/2 against HTTP/1.1 on the router's TLS listener (issue 18): the router's CPU time per
 * request and its throughput, with the same number of requests in flight, measured in one run.
 *
 *   node bench/http2.ts                 about 40 s; prints a Markdown table
 *   node bench/http2.ts --out FILE      also writes the report (docs/benchmarks-http2.md)
 *   node bench/http2.ts --quick         a few seconds per case
 *   node bench/run.ts --only http2      the same, through the benchmark runner
 *
 * Router, origin and load generator are separate processes (our own, on loopback, stopped at the
 * end); the router's CPU comes from /proc (user + system ticks of its process).
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuTicks, forkChild, freePort, stopAll, waitForPort } from './procs.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLK_TCK = 100; // Linux USER_HZ: /proc reports CPU time in 1/100 s

interface Case { name: string; proto: 'h1' | 'h2'; connections: number; streams: number }
const CASES: Case[] = [
  { name: 'HTTP/1.1, 50 keep-alive connections', proto: 'h1', connections: 50, streams: 1 },
  { name: 'HTTP/2, 50 connections × 1 stream', proto: 'h2', connections: 50, streams: 1 },
  { name: 'HTTP/2, 5 connections × 10 streams', proto: 'h2', connections: 5, streams: 10 },
];

export interface Http2Row { name: string; rps: number; cpuUsPerRequest: number; errors: number }

export async function benchHttp2(opts: { seconds: number; rounds: number }): Promise<Http2Row[]> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cutover-bench-h2-'));
  try {
    const cert = path.join(dir, 'c.pem');
    const key = path.join(dir, 'k.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
      '-days', '1', '-subj', '/CN=bench.test', '-addext', 'subjectAltName=DNS:bench.test'], { stdio: 'ignore' });
    const originPort = await freePort();
    const origin = spawn(process.execPath, ['-e', `require('node:http').createServer((q, s) => s.end('hello')).listen(${originPort}, '127.0.0.1')`], { stdio: 'ignore' });
    await waitForPort(originPort, origin, 'origin');
    const router = forkChild(path.join(HERE, 'tls-router-server.ts'), [cert, key, String(originPort)]);
    const port = await new Promise<number>((resolve, reject) => {
      router.once('message', (m: { type: string; port: number }) => resolve(m.port));
      router.once('exit', () => reject(new Error('router exited')));
    });
    const acc = new Map<string, { requests: number; ticks: number; seconds: number; errors: number }>();
    for (let round = 0; round < opts.rounds; round++) {
      const order = round % 2 === 0 ? CASES : [...CASES].reverse();
      for (const c of order) {
        const m = await measure(router.pid!, [path.join(HERE, 'tls-load.ts'), c.proto, String(port), cert, String(c.connections), String(c.streams), String(opts.seconds)], (opts.seconds + 30) * 1000);
        const { seconds, ticks, result: r } = m;
        const a = acc.get(c.name) ?? { requests: 0, ticks: 0, seconds: 0, errors: 0 };
        acc.set(c.name, { requests: a.requests + r.requests, ticks: a.ticks + ticks, seconds: a.seconds + seconds, errors: a.errors + r.errors });
      }
    }
    router.kill('SIGTERM');
    origin.kill('SIGTERM');
    return CASES.map((c) => {
      const a = acc.get(c.name)!;
      return { name: c.name, rps: a.requests / a.seconds, cpuUsPerRequest: (a.ticks / CLK_TCK) * 1e6 / Math.max(1, a.requests), errors: a.errors };
    });
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs the load generator; the router's CPU is sampled when it says `warm` and when it ends. */
function measure(routerPid: number, args: string[], timeoutMs: number): Promise<{ seconds: number; ticks: number; result: { requests: number; errors: number } }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('load generator timed out')); }, timeoutMs);
    let out = '';
    let start: { t: number; ticks: number } | null = null;
    let end: { t: number; ticks: number } | null = null;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      out += d;
      if (start === null && out.includes('warm\n')) start = { t: performance.now(), ticks: cpuTicks(routerPid) ?? 0 };
      if (start !== null && end === null && /\{.*\}\n/.test(out)) end = { t: performance.now(), ticks: cpuTicks(routerPid) ?? 0 };
    });
    child.on('close', () => {
      clearTimeout(timer);
      if (start === null || end === null) { reject(new Error(`load generator failed: ${out}`)); return; }
      const line = out.split('\n').find((l) => l.startsWith('{'))!;
      resolve({ seconds: (end.t - start.t) / 1000, ticks: end.ticks - start.ticks, result: JSON.parse(line) as { requests: number; errors: number } });
    });
  });
}

export function http2Table(rows: readonly Http2Row[]): string {
  const base = rows[0];
  const lines = [
    '| case (TLS listener, 50 requests in flight) | req/s | router CPU per request | vs HTTP/1.1 | failed |',
    '|---|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.name} | ${Math.round(r.rps)} | ${r.cpuUsPerRequest.toFixed(0)} µs | ${(r.cpuUsPerRequest / base.cpuUsPerRequest).toFixed(2)}× | ${r.errors} |`),
  ];
  return lines.join('\n');
}

/** The Markdown report: what was run, on what, and the table. */
export function http2Report(rows: readonly Http2Row[], o: { seconds: number; rounds: number; commit: string; load: [string, string] }): string {
  return `# Benchmark: HTTP/2 vs HTTP/1.1 on the TLS listener

Generated by \`node bench/http2.ts --out docs/benchmarks-http2.md\` on ${new Date().toISOString()}; code
under test: commit ${o.commit}. Rerun to refresh this file (do not edit it by hand).

Router (TLS listener, certificate by SNI), origin (a bare Node.js HTTP server answering 5 bytes)
and load generator (Node.js, \`node:http2\` / \`node:https\` keep-alive) are separate processes on
loopback; every case keeps 50 requests in flight, ${o.rounds} round(s) of ${o.seconds} s per case,
rounds in alternating order, after a 1 s warm-up that opens every connection (TLS handshakes are
not measured). "Router CPU per request" is the router process's user + system CPU time (from
/proc) over the requests it answered. On ${os.cpus().length} CPU cores shared with the load
generator and the origin (load average ${o.load[0]} before, ${o.load[1]} after): compare the ratios,
not the absolute numbers.

${http2Table(rows)}

Reading: with one request at a time per connection, HTTP/2 costs the router more CPU per request
than HTTP/1.1 (its framing, HPACK and stream bookkeeping in Node's \`http2\` module, plus the
compatibility layer the router's HTTP/1-shaped code runs on); when clients multiplex several
streams on one connection, as browsers do, much of that cost is shared across the streams.
`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean' }, out: { type: 'string' } } });
  const plan = values.quick ? { seconds: 2, rounds: 1 } : { seconds: 6, rounds: 2 };
  const loadBefore = os.loadavg().map((x) => x.toFixed(2)).join(' / ');
  const rows = await benchHttp2(plan);
  process.stdout.write(`${http2Table(rows)}\n`);
  if (values.out) {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: path.join(HERE, '..') }).toString().trim();
    writeFileSync(values.out, http2Report(rows, { ...plan, commit, load: [loadBefore, os.loadavg().map((x) => x.toFixed(2)).join(' / ')] }));
  }
}
