/**
 * The `gates:` and `warmup:` sections of cutover.yaml. Each gate has a `name` and exactly one
 * kind (`http`, `command`, `load`, `compare`, `mirror`, `session`); parsing turns it into a discriminated `Gate`.
 * Strings in http gates may contain `{version}` and `{color}`, substituted at run time.
 */
import { z } from 'zod';
import { byteSize, duration, share, urlPath } from './fields.ts';

export const DEFAULT_HTTP_GATE_TIMEOUT_MS = 10_000; // 10 seconds for one request
export const DEFAULT_COMMAND_GATE_TIMEOUT_MS = 5 * 60_000; // 5 minutes for a test suite
export const DEFAULT_LOAD_DURATION_MS = 10_000; // 10 seconds of load
export const DEFAULT_LOAD_CONNECTIONS = 10;
export const DEFAULT_LOAD_MAX_ERROR_RATE = 0.01; // 1 %
export const DEFAULT_COMPARE_REQUESTS = 100; // per colour, spread over the paths
export const DEFAULT_COMPARE_CONCURRENCY = 4;
export const DEFAULT_COMPARE_ERROR_RATE_RATIO = 2;
export const DEFAULT_COMPARE_ERROR_RATE_FLOOR = 0.01; // 1 %: preview may always reach this
export const DEFAULT_COMPARE_P95_RATIO = 1.5;
export const DEFAULT_COMPARE_P95_SLACK_MS = 10; // absolute allowance on top of the ratio
export const DEFAULT_MIRROR_SAMPLE = 0.1; // 10 % of eligible live requests
export const DEFAULT_MIRROR_MIN_REQUESTS = 200; // compared requests before the gate judges
export const DEFAULT_MIRROR_DURATION_MS = 5 * 60_000; // longest time to collect them
export const DEFAULT_MIRROR_MAX_DIFF_RATE = 0.01; // 1 % per endpoint, after noise
export const DEFAULT_MIRROR_MAX_BODY_BYTES = 256 * 1024; // 256 KiB; larger bodies are not compared
export const DEFAULT_MIRROR_QUEUE = 1_000; // captures waiting for their copies
export const DEFAULT_MIRROR_CONCURRENCY = 8; // copy pairs in flight
export const DEFAULT_MIRROR_REQUEST_TIMEOUT_MS = 10_000;
export const DEFAULT_SESSION_SESSIONS = 5;
export const DEFAULT_SESSION_LIVE_MIN_REQUESTS = 50; // live requests with credentials replayed
export const DEFAULT_SESSION_LIVE_DURATION_MS = 2 * 60_000;
export const DEFAULT_WARMUP_REQUESTS = 100;
export const DEFAULT_WARMUP_CONNECTIONS = 4;

const method = z.string().regex(/^[A-Za-z]+$/, 'expected an HTTP method like GET or POST').transform((m) => m.toUpperCase()).default('GET');
const headers = z.record(z.string(), z.union([z.string(), z.number()]).transform(String)).default({});
/** A request body: text as is, anything else sent as JSON. */
const body = z.union([z.string(), z.record(z.string(), z.unknown()), z.array(z.unknown())]).optional();
const statuses = z.union([z.int().min(100).max(599), z.array(z.int().min(100).max(599)).min(1)])
  .transform((s) => (Array.isArray(s) ? s : [s]));

const expectSchema = z.strictObject({
  /** Expected status, or a list of accepted ones. */
  status: statuses.default([200]),
  /** The body must contain this text. */
  bodyContains: z.string().optional(),
  /** The body must be JSON containing this subset (objects: listed keys; arrays: same length, element-wise). */
  json: z.unknown().optional(),
  /** The whole exchange (headers and body) must take at most this long. */
  maxLatency: duration.optional(),
});

const httpSchema = z.strictObject({
  method,
  path: urlPath,
  headers,
  body,
  expect: expectSchema.prefault({}),
});

const loadSchema = z.strictObject({
  duration: duration.default(DEFAULT_LOAD_DURATION_MS),
  connections: z.int().min(1).max(1_000).default(DEFAULT_LOAD_CONNECTIONS),
  /** Overall requests per second; absent = as fast as the connections go. */
  rate: z.number().positive().optional(),
  method,
  path: urlPath.default('/'),
  headers,
  body,
  /** Share of 5xx answers and failed requests (connection errors, timeouts). */
  maxErrorRate: share.default(DEFAULT_LOAD_MAX_ERROR_RATE),
  maxP95: duration.optional(),
  maxP99: duration.optional(),
});

const compareSchema = z.strictObject({
  paths: z.array(urlPath).min(1).default(['/']),
  requests: z.int().min(10).max(100_000).default(DEFAULT_COMPARE_REQUESTS),
  concurrency: z.int().min(1).max(64).default(DEFAULT_COMPARE_CONCURRENCY),
  headers,
  /** preview error rate must be ≤ max(live × ratio, errorRateFloor). */
  maxErrorRateRatio: z.number().min(1).default(DEFAULT_COMPARE_ERROR_RATE_RATIO),
  errorRateFloor: share.default(DEFAULT_COMPARE_ERROR_RATE_FLOOR),
  /** preview p95 must be ≤ live p95 × ratio + p95Slack. */
  maxP95Ratio: z.number().min(1).default(DEFAULT_COMPARE_P95_RATIO),
  p95Slack: duration.default(DEFAULT_COMPARE_P95_SLACK_MS),
});

const mirrorSchema = z.strictObject({
  /** Share of eligible live requests copied. */
  sample: share.default(DEFAULT_MIRROR_SAMPLE),
  /** Only these methods are mirrored (copies of non-idempotent requests have effects: opt in). */
  methods: z.array(z.string().regex(/^[A-Za-z]+$/, 'expected an HTTP method like GET').transform((m) => m.toUpperCase())).min(1).default(['GET', 'HEAD']),
  minRequests: z.int().min(1).max(10_000_000).default(DEFAULT_MIRROR_MIN_REQUESTS),
  duration: duration.default(DEFAULT_MIRROR_DURATION_MS),
  maxDiffRate: share.default(DEFAULT_MIRROR_MAX_DIFF_RATE),
  /** Extra field paths never compared, e.g. [headers.date, body.id, body.items[].ts]. */
  ignore: z.array(z.string().regex(/^(status|headers\.[\w-]+|body([.[].*)?)$/, 'expected a field path like "body.id", "body.items[].ts" or "headers.etag"')).default([]),
  /** Response headers compared (besides status and body). */
  headers: z.array(z.string().regex(/^[\w-]+$/, 'expected a header name').transform((h) => h.toLowerCase())).default(['content-type']),
  maxBodySize: byteSize.default(DEFAULT_MIRROR_MAX_BODY_BYTES),
  queue: z.int().min(1).max(100_000).default(DEFAULT_MIRROR_QUEUE),
  concurrency: z.int().min(1).max(256).default(DEFAULT_MIRROR_CONCURRENCY),
  requestTimeout: duration.default(DEFAULT_MIRROR_REQUEST_TIMEOUT_MS),
}).superRefine((m, ctx) => {
  if (m.sample <= 0) ctx.addIssue({ code: 'custom', path: ['sample'], message: 'expected a share above 0, like "10%"' });
});

const sessionRequest = z.strictObject({
  method,
  path: urlPath,
  headers,
  body,
});

/** Replay the sessions of live traffic: GET/HEAD requests carrying a Cookie or Authorization header are mirrored. */
const sessionLive = z.strictObject({
  sample: share.default(1),
  minRequests: z.int().min(1).max(1_000_000).default(DEFAULT_SESSION_LIVE_MIN_REQUESTS),
  duration: duration.default(DEFAULT_SESSION_LIVE_DURATION_MS),
  /** Share of live sessions the candidate may refuse (401/403/419 where live accepted). */
  maxLossRate: share.default(0),
});

const sessionSchema = z.strictObject({
  /** The request that creates a session on the live colour (its Set-Cookie answer is the session). */
  login: sessionRequest.optional(),
  /** A request that needs the session; it must be accepted by live and then by the candidate. */
  check: sessionRequest.extend({ expect: z.strictObject({ status: statuses.default([200]) }).prefault({}) }).optional(),
  /** Sessions created and replayed. */
  sessions: z.int().min(1).max(1_000).default(DEFAULT_SESSION_SESSIONS),
  live: sessionLive.optional(),
}).superRefine((v, ctx) => {
  const login = v.login !== undefined || v.check !== undefined;
  if (login && (v.login === undefined || v.check === undefined)) ctx.addIssue({ code: 'custom', path: [v.login === undefined ? 'login' : 'check'], message: 'expected both login and check (the request that creates a session, and one that needs it)' });
  if (!login && v.live === undefined) ctx.addIssue({ code: 'custom', message: 'expected login and check (create sessions), or live (replay the sessions of live traffic), or both' });
});

export type HttpGateSpec = z.infer<typeof httpSchema>;
export type MirrorGateSpec = z.infer<typeof mirrorSchema>;
export type SessionGateSpec = z.infer<typeof sessionSchema>;
export type LoadGateSpec = z.infer<typeof loadSchema>;
export type CompareGateSpec = z.infer<typeof compareSchema>;
export type GateKind = 'http' | 'command' | 'load' | 'compare' | 'mirror' | 'session';
export const GATE_KINDS: readonly GateKind[] = ['http', 'command', 'load', 'compare', 'mirror', 'session'];

interface GateBase {
  name: string;
  /** Upper bound for the whole gate, ms (defaults per kind). */
  timeout: number;
}
export type Gate =
  | (GateBase & { kind: 'http'; http: HttpGateSpec })
  | (GateBase & { kind: 'command'; command: string })
  | (GateBase & { kind: 'load'; load: LoadGateSpec })
  | (GateBase & { kind: 'compare'; compare: CompareGateSpec })
  | (GateBase & { kind: 'mirror'; mirror: MirrorGateSpec })
  | (GateBase & { kind: 'session'; session: SessionGateSpec });

const rawGate = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][\w.:-]{0,63}$/, 'expected a short name of letters, digits, ".", "_", ":" or "-"'),
  http: httpSchema.optional(),
  command: z.string().min(1, 'expected a shell command, like "npm run test:smoke"').optional(),
  load: loadSchema.optional(),
  compare: compareSchema.optional(),
  mirror: mirrorSchema.optional(),
  session: sessionSchema.optional(),
  timeout: duration.optional(),
});

export const gateSchema = rawGate
  .superRefine((g, ctx) => {
    const kinds = GATE_KINDS.filter((k) => g[k] !== undefined);
    if (kinds.length !== 1) {
      ctx.addIssue({ code: 'custom', message: kinds.length === 0 ? 'expected one of http, command, load, compare, mirror or session' : `expected exactly one of http, command, load, compare, mirror or session, got ${kinds.join(' and ')}` });
    }
  })
  .transform((g): Gate => {
    if (g.http) return { name: g.name, kind: 'http', http: g.http, timeout: g.timeout ?? (g.http.expect.maxLatency !== undefined ? Math.max(g.http.expect.maxLatency * 2, DEFAULT_HTTP_GATE_TIMEOUT_MS) : DEFAULT_HTTP_GATE_TIMEOUT_MS) };
    if (g.command !== undefined) return { name: g.name, kind: 'command', command: g.command, timeout: g.timeout ?? DEFAULT_COMMAND_GATE_TIMEOUT_MS };
    // Load and compare: the configured work plus a margin for connection set-up and the last responses.
    if (g.load) return { name: g.name, kind: 'load', load: g.load, timeout: g.timeout ?? g.load.duration + 30_000 };
    if (g.mirror) return { name: g.name, kind: 'mirror', mirror: g.mirror, timeout: g.timeout ?? g.mirror.duration + 30_000 };
    if (g.session) return { name: g.name, kind: 'session', session: g.session, timeout: g.timeout ?? (g.session.live ? g.session.live.duration : 0) + 60_000 };
    return { name: g.name, kind: 'compare', compare: g.compare!, timeout: g.timeout ?? 5 * 60_000 };
  });

export const gatesSchema = z.array(gateSchema).superRefine((gates, ctx) => {
  const seen = new Set<string>();
  gates.forEach((g, i) => {
    if (seen.has(g.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `gate name "${g.name}" is used twice; names identify gates in events` });
    seen.add(g.name);
  });
});

export const warmupSchema = z.strictObject({
  requests: z.int().min(1).max(1_000_000).default(DEFAULT_WARMUP_REQUESTS),
  paths: z.array(urlPath).min(1).default(['/']),
  connections: z.int().min(1).max(256).default(DEFAULT_WARMUP_CONNECTIONS),
  method,
  headers,
});
export type WarmupSpec = z.infer<typeof warmupSchema>;
