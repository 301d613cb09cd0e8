/**
 * Test helpers for the router: real upstream HTTP/WebSocket servers on loopback, a health view
 * the test controls, and route-table builders. Used by `src/router/*.test.ts` and the router
 * tests in test/; kept out of src/ so that it is never shipped nor imported by product code.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import http from 'node:http';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { spawn } from 'node:child_process';
import { WebSocketServer } from 'ws';
import type { Color } from '../../src/environments/types.ts';
import type { HealthView } from '../../src/health/types.ts';
import { freezeTable, type RouteTable, type RouteTarget } from '../../src/router/route-table.ts';

export interface TestUpstream {
  id: string;
  color: Color;
  host: string;
  port: number;
  target: RouteTarget;
  /** Requests answered (or started) so far. */
  requests: number;
  /** TCP connections accepted so far. */
  connections: number;
  /** TCP connections open now. */
  open(): number;
  /** Body bytes received so far by /sha (all requests). */
  shaBytes: number;
  /** /big answers fully written so far. */
  bigDone: number;
  /** /slow requests received so far (the router has bound and forwarded them). */
  slowStarted: number;
  close(): Promise<void>;
}

/**
 * An upstream that names itself in every answer: body `"<color> <id>"` for plain requests.
 *   GET  /slow?ms=N    answers after N ms
 *   GET  /hang         never answers
 *   POST /sha          answers `<color> <id> <bytes> <sha256>` of the streamed body
 *   GET  /headers      answers the request headers it received as JSON (raw pairs)
 *   GET  /big          answers 32 MB, written with backpressure
 *   GET  /hop          answers with hop-by-hop response headers that must not reach the client
 *   WS   any path      echoes messages, prefixed by `<color>:`
 */
export async function startUpstream(color: Color, index: number, host = '127.0.0.1'): Promise<TestUpstream> {
  const id = `${color}-${index}`;
  const sockets = new Set<Socket>();
  const pending = new Set<ServerResponse>();
  const state = { requests: 0, connections: 0, shaBytes: 0, bigDone: 0, slowStarted: 0 };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    state.requests++;
    const url = new URL(req.url ?? '/', 'http://x');
    const me = `${color} ${id}`;
    switch (url.pathname) {
      case '/slow': {
        state.slowStarted++;
        pending.add(res);
        const t = setTimeout(() => { pending.delete(res); res.end(me); }, Number(url.searchParams.get('ms') ?? 1000));
        res.on('close', () => { clearTimeout(t); pending.delete(res); });
        return;
      }
      case '/hang':
        pending.add(res);
        res.on('close', () => pending.delete(res));
        return;
      case '/sha': {
        const h = createHash('sha256');
        let n = 0;
        req.on('data', (c: Buffer) => { n += c.length; state.shaBytes += c.length; h.update(c); });
        req.on('end', () => res.end(`${me} ${n} ${h.digest('hex')}`));
        return;
      }
      case '/headers':
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ me, raw: req.rawHeaders }));
        return;
      case '/hop':
        res.writeHead(200, [
          'Connection', 'keep-alive, X-Secret-Hop',
          'Keep-Alive', 'timeout=5',
          'X-Secret-Hop', 'must not pass',
          'Proxy-Authenticate', 'Basic',
          'Trailer', 'X-Checksum',
          'Upgrade', 'h2c',
          'X-End-To-End', 'passes',
          'Set-Cookie', 'a=1',
          'Set-Cookie', 'b=2',
        ]);
        res.end(me);
        return;
      case '/big': {
        // 32 MB in 64 KiB chunks, respecting backpressure.
        const chunk = Buffer.alloc(64 * 1024, 'x');
        let left = 512;
        const pump = (): void => {
          while (left > 0) {
            left--;
            if (!res.write(chunk)) { res.once('drain', pump); return; }
          }
          res.end(() => { state.bigDone++; });
        };
        pump();
        return;
      }
      default:
        res.end(me);
    }
  });
  server.keepAliveTimeout = 5_000;
  server.on('connection', (s: Socket) => {
    state.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `${color}:${data.toString()}`));
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    id,
    color,
    host,
    port,
    target: { id, host, port },
    get requests() { return state.requests; },
    get connections() { return state.connections; },
    get shaBytes() { return state.shaBytes; },
    get bigDone() { return state.bigDone; },
    get slowStarted() { return state.slowStarted; },
    open: () => sockets.size,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  } as TestUpstream;
}

/** A port on loopback that refuses connections (bound then released). */
export async function refusingPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/**
 * An address where TCP connect() hangs: a child process listens with a tiny backlog and then
 * blocks its event loop forever, so nothing is accepted; once the accept queue is full (filled
 * here), the kernel drops further SYNs and connects stall until their timeout.
 */
export async function blackhole(): Promise<{ host: string; port: number; close: () => void }> {
  const script = `const s=require('net').createServer();s.listen({port:0,host:'127.0.0.1',backlog:1},()=>{` +
    `process.stdout.write(String(s.address().port)+'\\n');setTimeout(()=>Atomics.wait(new Int32Array(new SharedArrayBuffer(4)),0,0),50);});`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('error', reject);
  });
  await new Promise((r) => setTimeout(r, 150)); // let it block
  const fillers: Socket[] = [];
  for (let i = 0; i < 16; i++) {
    const s = netConnect(port, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
    const connected = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 150);
      s.once('connect', () => { clearTimeout(t); resolve(true); });
    });
    if (!connected) break; // the queue is full: connects now hang
  }
  return { host: '127.0.0.1', port, close: () => { for (const s of fillers) s.destroy(); child.kill('SIGKILL'); } };
}

export class TestHealth implements HealthView {
  readonly down = new Set<string>();
  readonly reports: { id: string; reason: string }[] = [];
  /** When false, reports are recorded but do not eject (keeps load tests deterministic). */
  ejectOnReport: boolean;
  constructor(opts: { ejectOnReport?: boolean } = {}) {
    this.ejectOnReport = opts.ejectOnReport ?? false;
  }
  isHealthy(id: string): boolean {
    return !this.down.has(id);
  }
  reportFailure(id: string, reason: string): void {
    this.reports.push({ id, reason });
    if (this.ejectOnReport) this.down.add(id);
  }
}

let revision = 0;
/** A frozen table sending live traffic to `live` and preview traffic to `preview`. */
export function routes(live: { color: Color; version?: string; targets: RouteTarget[] } | null, preview: { color: Color; version?: string; targets: RouteTarget[] } | null = null): RouteTable {
  const r = (x: typeof live) => (x === null ? null : { color: x.color, version: x.version ?? `v-${x.color}`, targets: x.targets });
  return freezeTable({ revision: ++revision, live: r(live), preview: r(preview) });
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** GET over node:http (optionally on a keep-alive agent): status and body as text, bounded by `timeoutMs`. */
export function httpGet(url: string, agent?: http.Agent | false, timeoutMs = 15_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')));
  });
}
