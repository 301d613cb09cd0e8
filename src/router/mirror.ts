/**
 * Mirroring (shadow traffic) in the router. While the route table carries a `mirror` spec, a
 * sample of live requests is captured as it is proxied (request head and body, the live answer),
 * and after the live answer is complete the capture is queued. Workers then send two copies at
 * the same moment, one to the live colour again and one to the preview colour (the candidate),
 * and count the three-way differences (mirror-diff.ts) for the gate to judge.
 *
 * Owns: the capture, the bounded queue, the copies' own connections, the counts per run.
 * Must never: delay, change or fail a live answer (captures only read what passes; the queue is
 * bounded and drops with a count when full; copies use their own sockets, never the live pools),
 * count copies in the router's request stats, or keep a capture after it is compared.
 */
import { Agent, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import type { HealthView } from '../health/types.ts';
import { AUTH_FAILURE_STATUSES, DiffCounter, redactPath, SESSION_EXAMPLES, type Answer, type MirrorReport } from './mirror-diff.ts';
import type { MirrorSpec } from './route-table.ts';
import type { BoundRoute } from './upstreams.ts';

export type { MirrorReport };

/** Reports kept after their run ended, so that the gate can read the final counts. */
const KEPT_REPORTS = 4;
/** The header every mirrored copy carries, so that an application can tell shadow traffic apart. */
export const MIRROR_HEADER = 'x-cutover-mirror';

/** What one sampled live request leaves behind for its copies. Filled by the exchange as it streams. */
export class MirrorCapture {
  readonly method: string;
  readonly path: string;
  /** The headers sent upstream (flat pairs, hop-by-hop removed, X-Forwarded-* set). */
  readonly headers: readonly string[];
  readonly route: BoundRoute;
  /** The request carried a Cookie or Authorization header. */
  readonly credentials: boolean;
  readonly #limit: number;
  #reqChunks: Buffer[] | null = null;
  #reqBytes = 0;
  status = 0;
  responseHeaders: readonly string[] = [];
  #resChunks: Buffer[] = [];
  #resBytes = 0;
  /** A body went past the limit: not compared. */
  tooLarge = false;

  constructor(method: string, path: string, headers: readonly string[], route: BoundRoute, limit: number, credentials: boolean) {
    this.credentials = credentials;
    this.method = method;
    this.path = path;
    this.headers = headers;
    this.route = route;
    this.#limit = limit;
  }

  requestChunk(b: Buffer): void {
    if (this.tooLarge) return;
    this.#reqBytes += b.length;
    if (this.#reqBytes > this.#limit) { this.tooLarge = true; this.#reqChunks = null; return; }
    (this.#reqChunks ??= []).push(b);
  }

  responseChunk(b: Buffer): void {
    if (this.tooLarge) return;
    this.#resBytes += b.length;
    if (this.#resBytes > this.#limit) { this.tooLarge = true; this.#resChunks = []; return; }
    this.#resChunks.push(b);
  }

  requestBody(): Buffer | null {
    return this.#reqChunks === null ? null : Buffer.concat(this.#reqChunks);
  }

  answer(): Answer {
    return { status: this.status, headers: this.responseHeaders, body: Buffer.concat(this.#resChunks) };
  }
}

interface Run {
  spec: MirrorSpec;
  counter: DiffCounter;
  report: Omit<MirrorReport, 'endpoints' | 'pending' | 'id' | 'sessions'>;
  sessions: MirrorReport['sessions'];
}

export class Mirror {
  readonly #health: HealthView;
  #run: Run | null = null;
  #candidate: BoundRoute | null = null;
  #methods: ReadonlySet<string> = new Set();
  readonly #runs = new Map<string, Run>();
  #queue: MirrorCapture[] = [];
  #active = 0;
  #agent: Agent | null = null;
  #closed = false;

  constructor(health: HealthView) {
    this.#health = health;
  }

  /** From the route table at each swap: the spec in force (null: off) and the colour copies go to. */
  configure(spec: MirrorSpec | null, candidate: BoundRoute | null): void {
    this.#candidate = candidate;
    if (spec === null) {
      // Captures still waiting are dropped (never compared, never kept); copies in flight finish.
      this.#run = null;
      this.#queue = [];
      return;
    }
    let run = this.#runs.get(spec.id);
    if (run === undefined) {
      run = { spec, counter: new DiffCounter(spec.headers, spec.ignore), report: { sampled: 0, dropped: 0, skipped: 0, liveErrors: 0, candidateErrors: 0, compared: 0 }, sessions: { compared: 0, lost: 0, examples: [] } };
      this.#runs.set(spec.id, run);
      while (this.#runs.size > KEPT_REPORTS) this.#runs.delete(this.#runs.keys().next().value as string);
    }
    this.#run = run;
    this.#methods = new Set(spec.methods);
    if (this.#agent === null) this.#agent = new Agent({ keepAlive: true, maxSockets: Math.max(2, spec.concurrency * 2), keepAliveMsecs: 1_000 });
  }

  /**
   * Hot path, for a live request about to be proxied: a capture when it is picked, else null.
   * Only requests of the live colour are mirrored, only when a candidate exists.
   */
  pick(method: string, contentLength: string | undefined, path: string, headers: readonly string[], route: BoundRoute, credentials: boolean): MirrorCapture | null {
    const run = this.#run;
    if (run === null || this.#candidate === null || !this.#methods.has(method)) return null;
    if (run.spec.credentialsOnly === true && !credentials) return null;
    if (Math.random() >= run.spec.sample) return null;
    run.report.sampled++;
    if (contentLength !== undefined && Number(contentLength) > run.spec.maxBodyBytes) {
      run.report.skipped++;
      return null;
    }
    return new MirrorCapture(method, path, headers, route, run.spec.maxBodyBytes, credentials);
  }

  /** The live answer is complete: queue the copies (or drop and count when the queue is full). */
  submit(c: MirrorCapture): void {
    const run = this.#run;
    if (run === null || this.#closed) return;
    if (c.tooLarge) { run.report.skipped++; return; }
    if (this.#queue.length >= run.spec.queue) { run.report.dropped++; return; }
    this.#queue.push(c);
    this.#pump();
  }

  /** The counts of one run (null when unknown); a plain object, safe to send across processes. */
  report(id: string): MirrorReport | null {
    const run = this.#runs.get(id);
    if (run === undefined) return null;
    const pending = this.#run === run ? this.#queue.length + this.#active : 0;
    return { id, ...run.report, pending, endpoints: run.counter.endpoints(), sessions: { ...run.sessions, examples: run.sessions.examples.map((e) => ({ ...e })) } };
  }

  close(): void {
    this.#closed = true;
    this.#queue = [];
    this.#agent?.destroy();
  }

  #pump(): void {
    const run = this.#run;
    while (run !== null && this.#active < run.spec.concurrency && this.#queue.length > 0) {
      const c = this.#queue.shift() as MirrorCapture;
      this.#active++;
      this.#copy(run, c).catch(() => undefined).finally(() => {
        this.#active--;
        this.#pump();
      });
    }
  }

  async #copy(run: Run, c: MirrorCapture): Promise<void> {
    const candidate = this.#candidate?.pick(this.#health, null) ?? null;
    const second = c.route.pick(this.#health, null);
    if (candidate === null || second === null) { run.report.skipped++; return; }
    const body = c.requestBody();
    const headers = copyHeaders(c.headers, body);
    const spec = run.spec;
    // Both copies at the same moment, so that time-dependent fields vary alike in both.
    const [s, k] = await Promise.all([
      this.#send(second.host, second.port, c, headers, body, spec),
      this.#send(candidate.host, candidate.port, c, headers, body, spec),
    ]);
    if (s === 'too-large' || k === 'too-large') { run.report.skipped++; return; }
    if (s === null) { run.report.liveErrors++; return; }
    if (k === null) run.report.candidateErrors++;
    run.report.compared++;
    const primary = c.answer();
    run.counter.add(c.method, c.path, primary, s, k);
    if (c.credentials) {
      const ss = run.sessions;
      ss.compared++;
      // A session live accepted (twice: no expiry in between) that the candidate does not recognise.
      if (k !== null && AUTH_FAILURE_STATUSES.has(k.status) && !AUTH_FAILURE_STATUSES.has(primary.status) && !AUTH_FAILURE_STATUSES.has(s.status)) {
        ss.lost++;
        if (ss.examples.length < SESSION_EXAMPLES) ss.examples.push({ request: `${c.method} ${redactPath(c.path)}`, live: primary.status, candidate: k.status });
      }
    }
  }

  #send(host: string, port: number, c: MirrorCapture, headers: OutgoingHttpHeaders, body: Buffer | null, spec: MirrorSpec): Promise<Answer | null | 'too-large'> {
    return new Promise((resolve) => {
      let settled = false;
      const done = (v: Answer | null | 'too-large') => { if (!settled) { settled = true; resolve(v); } };
      const req = httpRequest({ host, port, method: c.method, path: c.path, headers, agent: this.#agent ?? undefined, timeout: spec.timeoutMs }, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let n = 0;
        res.on('data', (b: Buffer) => {
          n += b.length;
          if (n > spec.maxBodyBytes) { done('too-large'); res.destroy(); return; }
          chunks.push(b);
        });
        res.on('end', () => done({ status: res.statusCode ?? 0, headers: res.rawHeaders, body: Buffer.concat(chunks) }));
        res.on('error', () => done(null));
        res.on('close', () => done(null));
      });
      req.on('timeout', () => req.destroy(new Error('mirror copy timed out')));
      req.on('error', () => done(null));
      req.end(body ?? undefined);
    });
  }
}

/** The captured upstream headers for a copy: framing set for the captured body, marked as a mirror. */
function copyHeaders(raw: readonly string[], body: Buffer | null): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i].toLowerCase();
    if (k === 'content-length' || k === 'transfer-encoding' || k === 'connection' || k === 'keep-alive') continue;
    const v = raw[i + 1];
    const prev = out[k];
    out[k] = prev === undefined ? v : `${String(prev)}${k === 'cookie' ? '; ' : ', '}${v}`;
  }
  if (body !== null) out['content-length'] = String(body.length);
  out[MIRROR_HEADER] = '1';
  return out;
}
