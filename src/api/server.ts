/**
 * The admin API under /api/v1 (JSON, bearer token on every request), the event stream
 * (server-sent events), and mount points for /metrics and the dashboard.
 * It translates HTTP to controller calls and CutoverError codes to HTTP statuses; it never
 * decides anything about traffic itself.
 */
import http from 'node:http';
import type { EventEmitter } from 'node:events';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { CutoverError, ERROR_CODES, isCutoverError } from '../lib/errors.ts';
import type { Controller } from '../controller/controller.ts';
import type { EventRecord, DeploymentRecord } from '../store/types.ts';
import type { Logger } from '../lib/logger.ts';
import { silentLogger } from '../lib/logger.ts';
import type { ApiExtras, RequestContext } from '../plugin-api/plugin.ts';
import { tokenMatches } from './token.ts';
import { quote } from '../lib/quote.ts';
import { loadTlsFiles, type TlsFiles } from '../lib/tls-files.ts';

export const API_PREFIX = '/api/v1';
const MAX_BODY_BYTES = 1 << 20; // 1 MiB: admin requests are small
const SSE_HEARTBEAT_MS = 15_000;
/** Failed authentications allowed per source address per window before 429. */
const AUTH_FAILURES_PER_WINDOW = 20;
const AUTH_WINDOW_MS = 60_000;
/** Addresses whose failures are remembered at once (oldest forgotten first beyond it). */
const AUTH_TRACKED_ADDRESSES = 10_000;
const ADMIN_HEADERS_TIMEOUT_MS = 10_000; // 10 seconds to send a request head
const ADMIN_REQUEST_TIMEOUT_MS = 30_000; // 30 seconds to send a whole request
/** Connections the admin listener holds at most (CLI calls, dashboards, event streams): 256, inside the router's descriptor reserve. */
export const ADMIN_MAX_CONNECTIONS = 256;

/** One service the API serves: its controller and the routes its plugins add. */
export interface ApiService {
  controller: Controller;
  routes?: (ctx: RequestContext) => Promise<boolean>;
  hosts?: readonly string[];
}

const deployBody = z.strictObject({
  version: z.string().min(1, 'expected the release version'),
  path: z.string().min(1).nullable().optional(),
  manual: z.boolean().optional(),
  /** Deploy a release that lacks an applied contract migration anyway (recorded). */
  force: z.boolean().optional(),
});
const promoteBody = z.strictObject({ force: z.boolean().optional() });
const reasonBody = z.strictObject({ reason: z.string().max(500).optional() });
const rollbackBody = z.strictObject({ reason: z.string().max(500).optional(), force: z.boolean().optional() });

export class AdminServer {
  private readonly server: http.Server | https.Server;
  private readonly tls: TlsFiles | null;
  private readonly controller: Controller;
  private readonly token: string;
  private readonly log: Logger;
  private extras: ApiExtras;
  /** False while the daemon starts (the listener is bound first, so a taken port fails before any traffic is served). */
  private isReady: boolean;
  private readonly authFailures = new Map<string, { count: number; since: number }>();
  private readonly streams = new Set<http.ServerResponse>();
  /** By name; one entry (the controller's app) without `services:`. */
  private services: ReadonlyMap<string, ApiService>;
  private readonly fleet: AdminFleetHooks | null;

  constructor(opts: { controller: Controller; token: string; logger?: Logger; extras?: ApiExtras; tls?: TlsFiles | null; starting?: boolean; services?: ReadonlyMap<string, ApiService>; fleet?: AdminFleetHooks }) {
    this.isReady = opts.starting !== true;
    this.fleet = opts.fleet ?? null;
    this.controller = opts.controller;
    this.services = opts.services ?? new Map([[opts.controller.app, { controller: opts.controller, routes: opts.extras?.routes }]]);
    this.token = opts.token;
    this.log = opts.logger ?? silentLogger;
    this.extras = opts.extras ?? {};
    this.tls = opts.tls ?? null;
    const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.handle(req, res).catch((err: unknown) => this.fail(res, err));
    };
    // Admin requests are small and quick: a slow client gets 408 well before Node's 5-minute default.
    const options: http.ServerOptions = { headersTimeout: ADMIN_HEADERS_TIMEOUT_MS, requestTimeout: ADMIN_REQUEST_TIMEOUT_MS, insecureHTTPParser: false };
    this.server = this.tls
      ? https.createServer({ ...options, ...loadTlsFiles(this.tls, 'admin.tls') }, onRequest)
      : http.createServer(options, onRequest);
    this.server.keepAliveTimeout = 5_000;
    this.server.maxConnections = ADMIN_MAX_CONNECTIONS;
  }

  /** Re-reads admin.tls for new handshakes; open connections keep theirs. A bad pair throws and changes nothing. */
  reloadTls(): boolean {
    if (!this.tls) return false;
    (this.server as https.Server).setSecureContext(loadTlsFiles(this.tls, 'admin.tls'));
    this.log.info({ cert: this.tls.cert }, 'admin TLS certificate reloaded');
    return true;
  }

  /** The daemon is fully up: serve every route, with the plugins' extras (metrics, dashboard, routes). */
  ready(extras?: ApiExtras, services?: ReadonlyMap<string, ApiService>): void {
    if (extras) this.extras = extras;
    if (services) this.services = services;
    this.isReady = true;
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    for (const s of this.streams) s.end();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const method = req.method ?? 'GET';
    const source = req.socket.remoteAddress ?? 'unknown';
    res.setHeader('cache-control', 'no-store');
    res.setHeader('x-content-type-options', 'nosniff');
    if (!this.isReady) {
      res.setHeader('retry-after', '1');
      throw new CutoverError('CUTOVER_ERR_STARTING', 'the daemon is starting (adopting instances); try again in a moment');
    }

    if (method === 'GET' && url.pathname === '/metrics' && this.extras.metrics) {
      if (!this.extras.metricsPublic && !this.authorised(req, res, source)) return;
      const m = await this.extras.metrics();
      res.writeHead(200, { 'content-type': m.contentType }).end(m.body);
      return;
    }
    if (!url.pathname.startsWith(`${API_PREFIX}/`)) {
      if (this.extras.ui?.(req, res)) return;
      throw new CutoverError('CUTOVER_ERR_NOT_FOUND', `no such endpoint: ${method} ${url.pathname}`);
    }
    if (!this.authorised(req, res, source)) return;
    if (method !== 'GET' && method !== 'HEAD' && this.fleet) {
      // Several controllers: a write is answered by the leader only; a follower forwards it there.
      let target = this.fleet.forwardTarget();
      // No leader to send it to yet (an election, a take-over under way): wait a moment for one.
      if (!target.self && target.url === null && (await this.fleet.settled(FORWARD_WAIT_MS))) target = this.fleet.forwardTarget();
      else if (!target.self && target.url === null) target = this.fleet.forwardTarget();
      if (!target.self) {
        if (target.url === null) {
          res.setHeader('retry-after', '1');
          throw new CutoverError('CUTOVER_ERR_NOT_LEADER', target.why, { details: { leader: null } });
        }
        await forward(req, res, target.url, this.fleet.id);
        return;
      }
    }

    const actor = sanitiseActor(req.headers['x-cutover-actor']);
    let path = url.pathname.slice(API_PREFIX.length);
    if (method === 'GET' && path === '/services') {
      sendJson(res, 200, { services: [...this.services].map(([name, s]) => serviceSummary(name, s)) });
      return;
    }
    // `/services/NAME/…` addresses one service; `/services/NAME` alone is its status.
    const scoped = /^\/services\/([^/]+)(\/.*)?$/.exec(path);
    let name: string | null = null;
    if (scoped) {
      name = decodeSegment(scoped[1], 'service');
      path = scoped[2] ?? '/status';
    } else if (url.searchParams.get('service')) {
      name = url.searchParams.get('service');
    }
    const svc = this.pickService(name);
    // A write is answered once it is durable (the etcd store writes behind; SQLite is durable at once).
    let replied: Promise<void> | null = null;
    const durable = method !== 'GET' && this.fleet ? this.fleet.durable : null;
    const ctx: RequestContext = {
      service: svc.name, req, res, method, path, query: url.searchParams, actor, source,
      body: () => readJson(req),
      send: durable
        ? (status, value) => { replied = durable().then(() => sendJson(res, status, value), (err: unknown) => this.fail(res, err)); }
        : (status, value) => sendJson(res, status, value),
    };
    // Every mutating call is logged, except the routers' request-record pushes (several a second, not decisions).
    if (method !== 'GET' && url.pathname !== `${API_PREFIX}/fleet/records`) this.log.info({ method, path: url.pathname, actor, source, service: svc.name }, 'admin call');
    if (await this.route(ctx, svc.service.controller)) { await replied; return; }
    if (svc.service.routes && (await svc.service.routes(ctx))) { await replied; return; }
    throw new CutoverError('CUTOVER_ERR_NOT_FOUND', `no such endpoint: ${method} ${url.pathname}`);
  }

  /** The service named (or the only one); several and none named is a usage error that lists them. */
  private pickService(name: string | null): { name: string; service: ApiService } {
    const names = [...this.services.keys()];
    if (name === null) {
      if (names.length === 1) return { name: names[0], service: this.services.get(names[0])! };
      throw new CutoverError('CUTOVER_ERR_USAGE', `this daemon runs ${names.length} services (${names.join(', ')}): name one with --service NAME (API: /api/v1/services/NAME/… or ?service=NAME)`, { details: { field: 'service', services: names } });
    }
    const s = this.services.get(name);
    if (s === undefined) throw new CutoverError('CUTOVER_ERR_NOT_FOUND', `no service named ${JSON.stringify(name)} (services: ${names.join(', ')})`, { details: { field: 'service', services: names } });
    return { name, service: s };
  }

  private async route(ctx: RequestContext, c: Controller): Promise<boolean> {
    const { method, path, send } = ctx;
    if (method === 'GET' && path === '/status') { send(200, c.status()); return true; }
    if (method === 'GET' && path === '/history') {
      const limit = intParam(ctx.query, 'limit', 20, 1, 1000);
      const sinceMs = timeParam(ctx.query, 'since');
      send(200, { deployments: c.history({ limit, since: sinceMs }) });
      return true;
    }
    if (method === 'GET' && path.startsWith('/deployments/')) {
      send(200, c.deployment(decodeSegment(path.slice('/deployments/'.length), 'id')));
      return true;
    }
    if (method === 'GET' && path === '/events') { this.stream(ctx, c); return true; }
    if (method === 'POST' && path === '/deployments') {
      const body = parseBody(deployBody, await ctx.body());
      const { deployment } = c.deploy({ version: body.version, path: body.path ?? null, manual: body.manual, force: body.force, actor: ctx.actor });
      this.audit(c, ctx, `deploy ${body.version}${body.force ? ' --force' : ''}`, { deployment: deployment.id });
      send(202, { deployment });
      return true;
    }
    if (method === 'POST' && path === '/promote') {
      const body = parseBody(promoteBody, await ctx.body());
      const deployment = c.promote({ actor: ctx.actor, force: body.force });
      this.audit(c, ctx, body.force ? 'promote --force' : 'promote', { deployment: deployment.id });
      send(200, { deployment });
      return true;
    }
    if (method === 'POST' && path === '/abort') {
      const body = parseBody(reasonBody, await ctx.body());
      const deployment = c.abort({ actor: ctx.actor, reason: body.reason });
      this.audit(c, ctx, 'abort', { deployment: deployment.id });
      const done = c.current();
      send(200, { deployment: done ? await done.done : deployment });
      return true;
    }
    if (method === 'POST' && path === '/rollback') {
      const body = parseBody(rollbackBody, await ctx.body());
      const result = await c.rollback({ actor: ctx.actor, reason: body.reason, force: body.force });
      this.audit(c, ctx, body.force ? 'rollback --force' : 'rollback', { ms: result.ms, restarted: result.restarted });
      send(200, result);
      return true;
    }
    if (method === 'POST' && path === '/retire') {
      const body = parseBody(reasonBody, await ctx.body());
      this.audit(c, ctx, 'retire', {});
      const retired = await c.retireStandby({ actor: ctx.actor, reason: body.reason ?? `retired by ${ctx.actor}` });
      send(200, { retired, status: c.status() });
      return true;
    }
    return false;
  }

  /** Every mutating call leaves an audit event: who, from where, what. */
  private audit(c: Controller, ctx: RequestContext, what: string, data: Record<string, unknown>): void {
    c.record({ type: 'audit', actor: ctx.actor, reason: `${ctx.actor} from ${ctx.source}: ${what}`, data: { method: ctx.method, path: ctx.path, source: ctx.source, ...data } });
  }

  /** Server-sent events: the stored backlog after `Last-Event-ID`/`after`, then live events. */
  private stream(ctx: RequestContext, controller: Controller): void {
    const { req, res } = ctx;
    const deployment = ctx.query.get('deployment') ?? undefined;
    const header = req.headers['last-event-id'] ?? ctx.query.get('after');
    let last = header !== undefined && header !== null ? Number(header) || 0 : 0;
    if (ctx.query.get('backlog') === 'false') last = Math.max(last, controller.lastEventSeq());
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(': cutover event stream\n\n');
    const writeEvent = (e: EventRecord) => {
      if (e.seq <= last || (deployment && e.deployment !== deployment)) return;
      last = e.seq;
      res.write(`id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
    };
    const writeDeployment = (d: DeploymentRecord) => {
      if (deployment && d.id !== deployment) return;
      res.write(`event: deployment\ndata: ${JSON.stringify(d)}\n\n`);
    };
    for (const e of controller.events({ afterSeq: last, deployment, limit: 10_000 })) writeEvent(e);
    if (deployment) {
      try { writeDeployment(controller.deployment(deployment).deployment); } catch { /* unknown id: events only */ }
    }
    controller.on('event', writeEvent);
    controller.on('deployment', writeDeployment);
    this.fleet?.followed.on('event', writeEvent);
    this.fleet?.followed.on('deployment', writeDeployment);
    const beat = setInterval(() => res.write(': keep-alive\n\n'), SSE_HEARTBEAT_MS);
    this.streams.add(res);
    const done = () => {
      clearInterval(beat);
      controller.off('event', writeEvent);
      controller.off('deployment', writeDeployment);
      this.fleet?.followed.off('event', writeEvent);
      this.fleet?.followed.off('deployment', writeDeployment);
      this.streams.delete(res);
    };
    res.on('close', done);
  }

  /**
   * The right token always passes, throttled or not: only failures are counted and only failures
   * are refused with 429 (issue #15: 21 token-less POSTs a minute — which any web page can send
   * with `no-cors` — locked the operator's own rollback out for a minute, from the same address).
   * The throttle limits the noise and cost of wrong guesses; what makes guessing hopeless is the
   * token itself (256 random bits when generated; a short CUTOVER_TOKEN is warned about at start).
   */
  private authorised(req: http.IncomingMessage, res: http.ServerResponse, source: string): boolean {
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (m && (this.fleet ? this.fleet.tokenMatches(m[1]) : tokenMatches(this.token, m[1]))) return true;
    const now = Date.now();
    const f = this.authFailures.get(source);
    if (f && now - f.since < AUTH_WINDOW_MS && f.count >= AUTH_FAILURES_PER_WINDOW) {
      f.count++;
      const waitS = Math.max(1, Math.ceil((AUTH_WINDOW_MS - (now - f.since)) / 1000));
      res.setHeader('retry-after', String(waitS));
      this.fail(res, new CutoverError('CUTOVER_ERR_RATE_LIMITED', `too many failed authentication attempts from this address; try again in ${waitS}s (check CUTOVER_TOKEN or the token file; a request with the right token is never refused)`, { details: { retryAfterSeconds: waitS } }));
      return false;
    }
    if (!f || now - f.since >= AUTH_WINDOW_MS) {
      // Bounded: many failing addresses must not grow this map without end.
      if (this.authFailures.size >= AUTH_TRACKED_ADDRESSES) {
        for (const [addr, e] of this.authFailures) if (now - e.since >= AUTH_WINDOW_MS) this.authFailures.delete(addr);
        if (this.authFailures.size >= AUTH_TRACKED_ADDRESSES) this.authFailures.delete(this.authFailures.keys().next().value as string);
      }
      this.authFailures.set(source, { count: 1, since: now });
    } else f.count++;
    this.log.warn({ source, path: req.url?.split('?')[0] }, 'admin request without a valid token');
    res.setHeader('www-authenticate', 'Bearer realm="cutover"');
    this.fail(res, new CutoverError('CUTOVER_ERR_UNAUTHORIZED', m ? 'the admin token is wrong' : 'missing admin token: send Authorization: Bearer <token>'));
    return false;
  }

  private fail(res: http.ServerResponse, err: unknown): void {
    const e = isCutoverError(err) ? err : new CutoverError('CUTOVER_ERR_INTERNAL', 'internal error (see the daemon log)', { cause: err });
    if (!isCutoverError(err)) this.log.error({ err }, 'admin API error');
    if (res.headersSent) { res.destroy(); return; }
    sendJson(res, ERROR_CODES[e.code].http, { error: { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) } });
  }
}

/** Fleet mode (several controllers): where writes go, when they are durable, which token counts. */
export interface AdminFleetHooks {
  /** This controller's id (sent along as x-cutover-forwarded-by). */
  id: string;
  forwardTarget: () => { self: true } | { self: false; url: string | null; why: string };
  /** Resolves true once this controller leads and took over (false after `ms` or when another leads). */
  settled: (ms: number) => Promise<boolean>;
  durable: () => Promise<void>;
  /** The fleet's token (its hash is in etcd). */
  tokenMatches: (given: string) => boolean;
  /** A follower's copy of what the leader writes, for the event stream. */
  followed: EventEmitter<{ event: [EventRecord]; deployment: [DeploymentRecord] }>;
}

/** A write that finds no leader (election, take-over) waits this long for one: 5 seconds. */
const FORWARD_WAIT_MS = 5_000;
/** How long a forwarded write may take at the leader: as long as the CLI waits (2 minutes). */
const FORWARD_TIMEOUT_MS = 120_000;

/** A follower's write, sent on to the leader as it came (method, path, headers with the token, body) and its answer back. */
function forward(req: http.IncomingMessage, res: http.ServerResponse, leaderUrl: string, by: string): Promise<void> {
  return new Promise((resolve) => {
    const target = new URL(req.url ?? '/', leaderUrl);
    const headers = { ...req.headers, host: target.host, 'x-cutover-forwarded-by': by };
    const mod = target.protocol === 'https:' ? https : http;
    const out = mod.request(target, { method: req.method, headers, timeout: FORWARD_TIMEOUT_MS }, (up) => {
      res.writeHead(up.statusCode ?? 502, { ...up.headers, 'x-cutover-leader': leaderUrl });
      up.pipe(res);
      up.on('end', () => resolve());
      up.on('error', () => { res.destroy(); resolve(); });
    });
    out.on('timeout', () => out.destroy(new Error('timed out')));
    out.on('error', (err) => {
      if (!res.headersSent) {
        const e = new CutoverError('CUTOVER_ERR_NOT_LEADER', `this controller follows; the leader at ${leaderUrl} did not answer the forwarded request (${err.message}); try again in a moment`, { details: { leader: leaderUrl } });
        sendJson(res.setHeader('retry-after', '1') as http.ServerResponse, ERROR_CODES[e.code].http, { error: { code: e.code, message: e.message, details: e.details } });
      } else res.destroy();
      resolve();
    });
    req.pipe(out);
  });
}

function serviceSummary(name: string, s: ApiService) {
  const st = s.controller.status();
  return { name, hosts: s.hosts ?? [], live: st.live, standby: st.standby, deployment: st.deployment ? { id: st.deployment.id, version: st.deployment.version, status: st.deployment.status, phase: st.deployment.phase } : null };
}

function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new CutoverError('CUTOVER_ERR_BAD_REQUEST', `request body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // Not the parser's message: it quotes the body back, and a body may hold what should not be echoed or logged.
    throw new CutoverError('CUTOVER_ERR_BAD_REQUEST', 'request body is not valid JSON', { details: { field: '(body)' } });
  }
}

function parseBody<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : issue.path.join('.') || '(body)';
  const message = issue.code === 'unrecognized_keys' ? 'unknown field' : issue.message.replace(/^Invalid input: /, '');
  throw new CutoverError('CUTOVER_ERR_BAD_REQUEST', `${field}: ${message}`, { details: { field } });
}

function intParam(q: URLSearchParams, name: string, def: number, min: number, max: number): number {
  const v = q.get(name);
  if (v === null) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new CutoverError('CUTOVER_ERR_BAD_REQUEST', `${name}: expected an integer from ${min} to ${max}`, { details: { field: name } });
  return n;
}

/**
 * `?since=`: milliseconds since the epoch, or an ISO 8601 time (`2026-12-01T10:00:00Z`). Anything
 * else is a 400 naming the field — before, `since=abc` became NaN and silently matched nothing.
 */
function timeParam(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  const n = /^\d{1,15}$/.test(v) ? Number(v) : /^\d{4}-\d{2}-\d{2}/.test(v) ? Date.parse(v) : Number.NaN;
  if (!Number.isFinite(n)) {
    throw new CutoverError('CUTOVER_ERR_BAD_REQUEST', `${name}: expected milliseconds since the epoch or an ISO 8601 time like 2026-12-01T10:00:00Z, got ${quote(v)}`, { details: { field: name } });
  }
  return n;
}

/** A percent-encoded path segment; a malformed escape (`%ZZ`) is the caller's error (400), not ours (500). */
function decodeSegment(raw: string, field: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new CutoverError('CUTOVER_ERR_BAD_REQUEST', `${field}: malformed percent-encoding in the path`, { details: { field } });
  }
}

function sanitiseActor(h: string | string[] | undefined): string {
  const v = (Array.isArray(h) ? h[0] : h) ?? 'api';
  const clean = v.replace(/[^\w.@+-]/g, '').slice(0, 64);
  return clean === '' ? 'api' : clean;
}
