/**
 * The traffic sample: a bounded, redacted copy of requests the live colour served (writes
 * included), kept for the compatibility run (replayed against the old and the new release on
 * the shadow database) and for watching the standby (its read-only part, through the preview
 * listener). Fed by the router's request hook (`RequestRecord.request`, chosen by `capture()`).
 *
 * Owns: what is sampled (methods, path prefixes, size), how much (per endpoint, in total), the
 * redaction and the file `<stateDir>/traffic-sample.json` (mode 0600). Redaction happens before
 * anything is kept, in memory or on disk.
 * Must never: keep a secret in clear (configured and built-in headers, cookie values, tokens in
 * query strings and JSON/form bodies), keep a body longer than the limit, or slow the router down
 * (`wants` is a clock read for most requests; at most 100 copies a second, and one a second per
 * endpoint once it is full).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { RequestRecord } from '../router/data-plane.ts';
import { endpointKey, pathWanted, type CaptureSpec, type PortableCapture } from '../router/capture-spec.ts';
import { silentLogger, type Logger } from '../lib/logger.ts';
import type { SampleConfig } from '../config/database.ts';

export const REDACTED = '[redacted]';
export const SAMPLE_FILE = 'traffic-sample.json';
/** Once an endpoint holds `perEndpoint` requests, at most one new copy of it per second: 1 s. */
const REFRESH_MS = 1_000;
/** At most one copy per 10 ms (100 a second) whatever the traffic: the router's cost stays flat. */
const CAPTURE_GAP_MS = 10;
/** At most one endpoint lookup per millisecond while nothing is copied (busy, full endpoints). */
const LOOKUP_GAP_MS = 1;
/** Changes are written to the state directory at most this often: 2 s. */
const SAVE_DELAY_MS = 2_000;
const READ_ONLY: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Header values always redacted (lower case). */
const SECRET_HEADERS: ReadonlySet<string> = new Set([
  'authorization', 'proxy-authorization', 'x-api-key', 'api-key', 'x-auth-token', 'x-access-token',
  'x-csrf-token', 'x-xsrf-token', 'x-amz-security-token', 'x-goog-api-key',
]);
/** Query parameter and body field names always redacted: the name, or its last `_`/`-` part. */
const SECRET_FIELD = /^(?:.*[_-])?(?:token|secret|password|passwd|pwd|passphrase|apikey|api_key|key|signature|sig|auth|authorization|session|sessionid|sid|credential|credentials|otp|code|jwt|cookie)$/i;
/** Never copied into the sample: hop-by-hop, per-connection or recomputed on replay. */
const DROPPED_HEADERS: ReadonlySet<string> = new Set([
  'host', 'connection', 'keep-alive', 'transfer-encoding', 'content-length', 'te', 'trailer', 'upgrade',
  'proxy-connection', 'expect', 'forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-real-ip',
]);

export interface SampledRequest {
  method: string;
  /** Origin-form path with query (secrets redacted). */
  path: string;
  headers: [string, string][];
  /** Base64 of the body (secret fields redacted), or null. */
  body: string | null;
  /** What the live colour answered. */
  status: number;
  version: string;
  at: number;
  /** What was redacted (`header:authorization`, `cookie:sid`, `query:token`, `body:password`). */
  redacted: string[];
}

interface FileShape { version: 1; requests: SampledRequest[] }

export class TrafficSample {
  readonly #cfg: SampleConfig;
  readonly #file: string | null;
  readonly #log: Logger;
  readonly #redactHeaders: Set<string>;
  readonly #redactFields: Set<string>;
  /** Endpoint key → its newest requests, oldest first; Map order = least recently updated first. */
  readonly #byEndpoint = new Map<string, SampledRequest[]>();
  readonly #touched = new Map<string, number>();
  #total = 0;
  #nextLookupAt = 0;
  #saveTimer: NodeJS.Timeout | null = null;

  constructor(cfg: SampleConfig, o: { stateDir?: string | null; logger?: Logger } = {}) {
    this.#cfg = cfg;
    this.#file = o.stateDir ? path.join(o.stateDir, SAMPLE_FILE) : null;
    this.#log = (o.logger ?? silentLogger).child({ component: 'traffic-sample' });
    this.#redactHeaders = new Set(cfg.redactHeaders.map((h) => h.toLowerCase()));
    this.#redactFields = new Set(cfg.redactFields.map((f) => f.toLowerCase()));
    this.#load();
  }

  /**
   * What the router should copy: cheap, asked once per live request. In-process `wants` reads
   * what the sample holds; a router process builds its own from `spec` (router/capture-spec.ts).
   */
  capture(): PortableCapture {
    const cfg = this.#cfg;
    const methods = new Set<string>(cfg.methods);
    return {
      spec: this.captureSpec(),
      maxBodyBytes: cfg.maxBodySize,
      // Asked for every live request: a clock read and a set lookup, then at most 1000 lookups a
      // second and 100 copies a second, however busy the router is.
      wants: (method, p) => {
        if (!methods.has(method)) return false;
        const now = Date.now();
        if (now < this.#nextLookupAt) return false;
        this.#nextLookupAt = now + LOOKUP_GAP_MS;
        if (!this.#pathWanted(p)) return false;
        const key = endpointKey(method, p);
        const list = this.#byEndpoint.get(key);
        const wanted = list === undefined || list.length < cfg.perEndpoint || now - (this.#touched.get(key) ?? 0) >= REFRESH_MS;
        if (wanted) this.#nextLookupAt = now + CAPTURE_GAP_MS;
        return wanted;
      },
    };
  }

  /** The same choice as plain data, for a router in another process. */
  captureSpec(): CaptureSpec {
    const cfg = this.#cfg;
    return {
      methods: [...cfg.methods], paths: [...cfg.paths], exclude: [...cfg.exclude], maxBodyBytes: cfg.maxBodySize,
      perEndpoint: cfg.perEndpoint, refreshMs: REFRESH_MS, maxEndpoints: cfg.maxRequests,
      captureGapMs: CAPTURE_GAP_MS, lookupGapMs: LOOKUP_GAP_MS,
    };
  }

  /** The router's request hook: keep what the live colour answered below 500, redacted. */
  observe(r: RequestRecord): void {
    const req = r.request;
    if (req === undefined || r.listener !== 'live' || r.error !== undefined || r.status < 100 || r.status >= 500 || req.truncated) return;
    this.add(this.redact(r.method, req.path, req.rawHeaders, req.body, { status: r.status, version: r.version }));
  }

  /** Redact one request (exported for tests and for requests from elsewhere). */
  redact(method: string, p: string, rawHeaders: readonly string[], body: Buffer | null, live: { status: number; version: string; at?: number }): SampledRequest {
    const redacted: string[] = [];
    const headers: [string, string][] = [];
    let contentType = '';
    for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
      const name = rawHeaders[i];
      const lower = name.toLowerCase();
      if (DROPPED_HEADERS.has(lower)) continue;
      let value = rawHeaders[i + 1];
      if (lower === 'content-type') contentType = value.toLowerCase();
      if (lower === 'cookie') {
        value = value.split(';').map((c) => {
          const eq = c.indexOf('=');
          const n = (eq === -1 ? c : c.slice(0, eq)).trim();
          redacted.push(`cookie:${n}`);
          return `${n}=${REDACTED}`;
        }).join('; ');
      } else if (SECRET_HEADERS.has(lower) || this.#redactHeaders.has(lower) || /(?:token|secret|api-?key|password)/.test(lower)) {
        value = REDACTED;
        redacted.push(`header:${lower}`);
      }
      headers.push([name, value]);
    }
    return {
      method, path: this.#redactQuery(p, redacted), headers,
      body: body === null || body.length === 0 ? null : this.#redactBody(body, contentType, redacted).toString('base64'),
      status: live.status, version: live.version, at: live.at ?? Date.now(), redacted,
    };
  }

  add(s: SampledRequest): void {
    const key = endpointKey(s.method, s.path);
    let list = this.#byEndpoint.get(key);
    if (list === undefined) {
      list = [];
      if (this.#total >= this.#cfg.maxRequests) this.#evictOne();
    } else {
      this.#byEndpoint.delete(key); // re-insert: most recently updated last
    }
    this.#byEndpoint.set(key, list);
    this.#touched.set(key, Date.now());
    list.push(s);
    this.#total++;
    if (list.length > this.#cfg.perEndpoint) { list.shift(); this.#total--; }
    while (this.#total > this.#cfg.maxRequests) this.#evictOne();
    this.#scheduleSave();
  }

  /** Every sampled request, oldest first (replay order: writes happen in the order they were made). */
  all(): SampledRequest[] {
    return [...this.#byEndpoint.values()].flat().sort((a, b) => a.at - b.at);
  }

  /** GET, HEAD and OPTIONS only: safe to send to a standby that runs on the real database. */
  readOnly(): SampledRequest[] {
    return this.all().filter((s) => READ_ONLY.has(s.method));
  }

  get size(): number {
    return this.#total;
  }

  /** Write pending changes now (shutdown). */
  flush(): void {
    if (this.#saveTimer) clearTimeout(this.#saveTimer);
    this.#saveTimer = null;
    this.#save();
  }

  #pathWanted(p: string): boolean {
    return pathWanted(this.#cfg, p);
  }

  #secretField(name: string): boolean {
    return SECRET_FIELD.test(name) || this.#redactFields.has(name.toLowerCase());
  }

  #redactQuery(p: string, redacted: string[]): string {
    const q = p.indexOf('?');
    if (q === -1) return p;
    const params = new URLSearchParams(p.slice(q + 1));
    const out = new URLSearchParams();
    let changed = false;
    for (const [name, value] of params) {
      const secret = this.#secretField(name);
      out.append(name, secret ? REDACTED : value);
      if (secret && !redacted.includes(`query:${name}`)) redacted.push(`query:${name}`);
      changed ||= secret;
    }
    // Unchanged queries are kept byte for byte (URLSearchParams would re-encode them).
    return changed ? `${p.slice(0, q)}?${out.toString()}` : p;
  }

  #redactBody(body: Buffer, contentType: string, redacted: string[]): Buffer {
    if (contentType.includes('json')) {
      try {
        const v = JSON.parse(body.toString('utf8')) as unknown;
        const out = this.#redactJson(v, redacted);
        return Buffer.from(JSON.stringify(out));
      } catch {
        return body; // not JSON after all: replayed as sent
      }
    }
    if (contentType.startsWith('application/x-www-form-urlencoded')) {
      const r: string[] = [];
      const redactedForm = this.#redactQuery(`?${body.toString('utf8')}`, r).slice(1);
      for (const x of r) redacted.push(x.replace(/^query:/, 'body:'));
      return r.length > 0 ? Buffer.from(redactedForm) : body;
    }
    return body;
  }

  #redactJson(v: unknown, redacted: string[]): unknown {
    if (Array.isArray(v)) return v.map((x) => this.#redactJson(x, redacted));
    if (v === null || typeof v !== 'object') return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (this.#secretField(k) && (typeof x !== 'object' || x === null)) {
        out[k] = REDACTED;
        redacted.push(`body:${k}`);
      } else {
        out[k] = this.#redactJson(x, redacted);
      }
    }
    return out;
  }

  /** Drop the oldest request of the endpoint updated least recently (endpoints stay diverse). */
  #evictOne(): void {
    const first = this.#byEndpoint.entries().next();
    if (first.done) return;
    const [key, list] = first.value;
    list.shift();
    this.#total--;
    if (list.length === 0) { this.#byEndpoint.delete(key); this.#touched.delete(key); }
  }

  #scheduleSave(): void {
    if (this.#file === null || this.#saveTimer !== null) return;
    this.#saveTimer = setTimeout(() => { this.#saveTimer = null; this.#save(); }, SAVE_DELAY_MS);
    this.#saveTimer.unref();
  }

  #save(): void {
    if (this.#file === null) return;
    const data: FileShape = { version: 1, requests: this.all() };
    const tmp = `${this.#file}.${process.pid}.tmp`;
    try {
      mkdirSync(path.dirname(this.#file), { recursive: true });
      writeFileSync(tmp, JSON.stringify(data), { mode: 0o600 });
      renameSync(tmp, this.#file);
    } catch (err) {
      this.#log.warn({ err }, 'the traffic sample could not be written to the state directory');
    }
  }

  #load(): void {
    if (this.#file === null) return;
    let data: FileShape;
    try {
      data = JSON.parse(readFileSync(this.#file, 'utf8')) as FileShape;
    } catch {
      return; // none yet, or unreadable: start empty
    }
    if (data?.version !== 1 || !Array.isArray(data.requests)) return;
    const saveTimer = this.#saveTimer;
    for (const s of data.requests) {
      if (typeof s?.method === 'string' && typeof s.path === 'string' && Array.isArray(s.headers)) this.add(s);
    }
    if (saveTimer === null && this.#saveTimer !== null) { clearTimeout(this.#saveTimer); this.#saveTimer = null; }
  }
}

export { endpointKey };

export function isReadOnly(method: string): boolean {
  return READ_ONLY.has(method);
}
