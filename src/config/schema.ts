/**
 * The cutover.yaml schema. Validated once at the boundary (load.ts), then frozen.
 * Durations are written as "500ms"/"30s"/"5m" and come out as milliseconds.
 * Types come from here (z.infer); never write them twice.
 */
import { z } from 'zod';
import { parseCidr } from '../lib/cidr.ts';
import { ENV_PATTERN, isCutoverVariable } from '../lib/child-env.ts';
import { analysisSchema } from './analysis.ts';
import { databaseSchema } from './database.ts';
import * as d from './defaults.ts';
import { byteSize, duration } from './fields.ts';
import { gatesSchema, warmupSchema } from './gates.ts';
import { notificationsSchema } from './notifications.ts';
import { fleetSchema } from '../fleet/schema.ts';
import { switchSchema } from './switch.ts';

/** A duration like "500ms", "30s", "5m" → milliseconds (defined in fields.ts, shared by every section). */
export { duration };

export interface Address { host: string; port: number }

/** "127.0.0.1:8080", "[::1]:8080", "localhost:0", ":8080" (all interfaces) → {host, port}. */
export function parseAddress(text: string): Address | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]*)):(\d{1,5})$/.exec(text.trim());
  if (!m) return null;
  const port = Number(m[3]);
  if (port > 65_535) return null;
  const host = m[1] ?? (m[2] === '' ? '0.0.0.0' : m[2]);
  return { host, port };
}

export const address = z.string().transform((v, ctx) => {
  const a = parseAddress(v);
  if (!a) {
    ctx.addIssue({ code: 'custom', message: `expected host:port like "127.0.0.1:8080", got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return a;
});

/** Certificate and key files (PEM), relative to the config file; reloaded on SIGHUP. */
const tlsSchema = z.strictObject({
  cert: z.string().min(1, 'expected the certificate file (PEM)'),
  key: z.string().min(1, 'expected the private key file (PEM)'),
});

/** `router.tls`: certificate files, and/or a TLS listener of its own with ACME certificates. */
const acmeSchema = z.strictObject({
  directory: z.url({ protocol: /^https?$/, error: 'expected the ACME directory URL, like "https://acme-v02.api.letsencrypt.org/directory"' }),
  email: z.email().optional(),
  /** Extra CA (PEM) trusted for the ACME server itself (private ACME servers), relative to the config file. */
  caFile: z.string().min(1).optional(),
  renewBefore: duration.default(d.DEFAULT_ACME_RENEW_BEFORE_MS),
  /** Host names to certify when there is no `services:` (with services: every service host). */
  hosts: z.array(z.string().min(1)).optional(),
});
const routerTlsSchema = z.strictObject({
  cert: z.string().min(1, 'expected the certificate file (PEM)').optional(),
  key: z.string().min(1, 'expected the private key file (PEM)').optional(),
  /** HTTPS listener of its own (HTTP/2 + HTTP/1.1, SNI); `router.listen` stays plain HTTP. */
  listen: z.lazy(() => address).optional(),
  acme: acmeSchema.optional(),
}).superRefine((v, ctx) => {
  if ((v.cert === undefined) !== (v.key === undefined)) ctx.addIssue({ code: 'custom', path: [v.cert === undefined ? 'cert' : 'key'], message: 'cert and key go together' });
  if (v.cert === undefined && v.acme === undefined && v.listen === undefined) ctx.addIssue({ code: 'custom', message: 'expected cert and key files, or acme (with listen)' });
  if (v.acme !== undefined && v.listen === undefined) ctx.addIssue({ code: 'custom', path: ['listen'], message: 'acme needs a TLS listener of its own (router.tls.listen, e.g. 0.0.0.0:443): HTTP-01 challenges arrive on router.listen' });
});

const cidr = z.string().refine((v) => parseCidr(v) !== null, { message: 'expected an address or CIDR range like "10.0.0.0/8" or "::1"' });

/** `router.haproxy`: how the HAProxy engine runs HAProxy (docs/engines.md). */
const haproxySchema = z.strictObject({
  binary: z.string().min(1).default(d.DEFAULT_HAPROXY_BINARY),
  /** HAProxy worker threads (`nbthread`). */
  threads: z.int().min(1).max(64).default(1),
  /**
   * Latency samples: answers below 500 logged 1 in N into the ring Cutover reads (`auto`: N follows
   * the request rate; 1 = every request). Counts come from HAProxy's counters; errors are always logged.
   */
  logSample: z.union([z.literal('auto'), z.int().min(1).max(100_000)]).default('auto'),
  maxConnections: z.int().min(16).default(d.DEFAULT_HAPROXY_MAX_CONNECTIONS),
  /** false: attach to an HAProxy run by something else through `socket`; Cutover never starts, reloads or stops it. */
  manage: z.boolean().default(true),
  /** Admin-level stats socket; default <stateDir>/haproxy/admin.sock. */
  socket: z.string().min(1).optional(),
});

const workers = z.union([z.literal('auto'), z.int().min(1).max(256)]);

/** Preview on the live listener by header or cookie: trusted addresses, or a value signed with `secret`. */
const previewAccessSchema = z.strictObject({
  header: z.string().regex(/^[\w-]+$/, 'expected a header name').transform((h) => h.toLowerCase()).default(d.DEFAULT_PREVIEW_HEADER),
  cookie: z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'expected a cookie name').default(d.DEFAULT_PREVIEW_COOKIE),
  trusted: z.array(z.string().refine((v) => parseCidr(v) !== null, { message: 'expected an address or CIDR range like "10.0.0.0/8" or "::1"' })).default([]),
  secret: z.string().min(16, 'expected at least 16 characters (use ${VAR} to keep it out of the file)').optional(),
}).superRefine((v, ctx) => {
  if (v.trusted.length === 0 && v.secret === undefined) ctx.addIssue({ code: 'custom', path: ['trusted'], message: 'expected trusted addresses, a secret, or both: otherwise anyone could see the preview' });
});

const routerSchema = z.strictObject({
  /** Data plane: Cutover's own router, or HAProxy driven through its runtime API. */
  engine: z.enum(['builtin', 'haproxy']).default('builtin'),
  /** Builtin engine: data-plane threads on the same ports (SO_REUSEPORT); `auto` = one per CPU. */
  workers: workers.default(1),
  haproxy: haproxySchema.prefault({}),
  listen: address.prefault(d.DEFAULT_LISTEN),
  preview: address.prefault(d.DEFAULT_PREVIEW),
  drainTimeout: duration.default(d.DEFAULT_DRAIN_TIMEOUT_MS),
  connectTimeout: duration.default(d.DEFAULT_CONNECT_TIMEOUT_MS),
  responseTimeout: duration.default(d.DEFAULT_RESPONSE_TIMEOUT_MS),
  // Limits and trust for the router's listeners (issue #6; README "Security").
  maxHeaderSize: byteSize.default(d.DEFAULT_MAX_HEADER_SIZE_BYTES),
  maxHeaderCount: z.int().min(1).max(10_000).default(d.DEFAULT_MAX_HEADER_COUNT),
  maxUrlLength: byteSize.default(d.DEFAULT_MAX_URL_LENGTH_BYTES),
  maxBodySize: byteSize.default(d.DEFAULT_MAX_BODY_SIZE_BYTES),
  headersTimeout: duration.default(d.DEFAULT_HEADERS_TIMEOUT_MS),
  requestTimeout: duration.default(d.DEFAULT_REQUEST_TIMEOUT_MS),
  trustedProxies: z.array(cidr).default([]),
  tls: routerTlsSchema.optional(),
  /** With `services:`: the service for requests whose host no service names (absent: 404). */
  defaultService: z.string().optional(),
  previewAccess: previewAccessSchema.optional(),
  /**
   * Client connections the live listener holds at most; over it new ones are refused at accept
   * while open ones keep working. `auto`: what the descriptor limit allows after
   * `descriptorReserve`, two descriptors a connection (client and upstream), 90 % to live and
   * 10 % to preview (daemon/fd-limit.ts).
   */
  maxConnections: z.union([z.literal('auto'), z.int().min(1).max(1_000_000)]).default('auto'),
  /** Descriptors kept for upstreams, health checks, the admin API, logs and state; default 1024 (at most a quarter of the limit). */
  descriptorReserve: z.int().min(0).max(1_000_000).optional(),
}).superRefine((v, ctx) => {
  if (v.requestTimeout > 0 && v.headersTimeout > v.requestTimeout) ctx.addIssue({ code: 'custom', path: ['headersTimeout'], message: 'must not be longer than router.requestTimeout' });
  if (v.engine === 'haproxy' && v.workers !== 1) ctx.addIssue({ code: 'custom', path: ['workers'], message: 'is for the builtin engine; with engine "haproxy" use router.haproxy.threads' });
  if (v.engine === 'haproxy' && v.previewAccess) ctx.addIssue({ code: 'custom', path: ['previewAccess'], message: 'needs router.engine "builtin" (the HAProxy engine serves the preview on router.preview only)' });
});

const adminSchema = z.strictObject({
  listen: address.prefault(d.DEFAULT_ADMIN_LISTEN),
  /** Serve /metrics without the admin token (for a Prometheus scraper on a trusted network). */
  metricsPublic: z.boolean().default(false),
  tls: tlsSchema.optional(),
});

/** An agent id (`cutover agent --id`): one etcd key segment. */
export const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

const processSchema = z.strictObject({
  command: z.string().min(1, 'expected the command that starts one instance, like "node server.js"'),
  instances: z.int().min(1).max(64).default(d.DEFAULT_INSTANCES),
  env: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String)).default({}),
  /**
   * Variables passed from the daemon's environment besides the base list (PATH, HOME, LANG, LC_*,
   * TZ…; src/lib/child-env.ts): names or `PREFIX_*` patterns. Cutover's own (`CUTOVER_*`) never pass.
   */
  inheritEnv: z.array(z.string()
    .regex(ENV_PATTERN, 'expected a variable name or a PREFIX_* pattern')
    .refine((v) => !isCutoverVariable(v) && v !== '*' , { message: 'Cutover\'s own variables (CUTOVER_*, e.g. the admin token) are never passed to instances; "*" is not allowed either: name what the application needs' }))
    .default([]),
  startTimeout: duration.default(d.DEFAULT_START_TIMEOUT_MS),
  stopTimeout: duration.default(d.DEFAULT_STOP_TIMEOUT_MS),
  /**
   * Where a release lives when `deploy` has no --path: "./releases/{version}", relative to the
   * config file. `{version}`, not `${version}` (that one is an environment variable).
   */
  releaseDir: z.string().min(1).refine((v) => v.includes('{version}'), { message: 'expected a directory template containing {version}, like "./releases/{version}"' }).optional(),
  /**
   * Fleet mode (issue 11): run the instances on `cutover agent --id NAME` hosts instead of this one,
   * spread over the agents named here in order (instance i on agent i mod n), or `auto`: every
   * registered agent. Needs `fleet:`.
   */
  hosts: z.union([
    z.literal('auto'),
    z.array(z.string().regex(AGENT_ID, 'expected an agent id (letters, digits, ".", "_", "-"), as given to `cutover agent --id`'))
      .min(1, 'expected at least one agent id, or "auto"')
      .refine((v) => new Set(v).size === v.length, { message: 'an agent is named twice' }),
  ]).optional(),
});

const targetList = z.array(address).min(1, 'expected at least one host:port target');
const staticSchema = z.strictObject({ blue: targetList, green: targetList });

const environmentsSchema = z
  .strictObject({
    provider: z.enum(['process', 'static']).default('process'),
    process: processSchema.optional(),
    static: staticSchema.optional(),
  })
  .superRefine((v, ctx) => {
    if (v.provider === 'process' && !v.process)
      ctx.addIssue({ code: 'custom', path: ['process'], message: 'provider is "process": add environments.process.command' });
    if (v.provider === 'static' && !v.static)
      ctx.addIssue({ code: 'custom', path: ['static'], message: 'provider is "static": add environments.static.blue and .green target lists' });
  });

const healthSchema = z.strictObject({
  path: z.string().startsWith('/', 'expected a path starting with "/"').default(d.DEFAULT_HEALTH_PATH),
  interval: duration.default(d.DEFAULT_HEALTH_INTERVAL_MS),
  timeout: duration.default(d.DEFAULT_HEALTH_TIMEOUT_MS),
  healthyThreshold: z.int().min(1).default(d.DEFAULT_HEALTHY_THRESHOLD),
  unhealthyThreshold: z.int().min(1).default(d.DEFAULT_UNHEALTHY_THRESHOLD),
});

const standbySchema = z.strictObject({
  keepFor: duration.default(d.DEFAULT_STANDBY_KEEP_FOR_MS),
  /** Process provider: the standby keeps running beside the next release until it has switched (issue 16). */
  keepWarmDuringDeploy: z.boolean().default(true),
});

/** A host name a service answers for: `shop.example.com`, or one wildcard label `*.example.com`. */
const hostName = z.string().transform((v) => v.toLowerCase()).refine((v) => /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(v) || /^[0-9a-f:.]+$/.test(v), { message: 'expected a host name like "shop.example.com" or "*.example.com" (no port, no scheme)' });

/**
 * One entry of `services:`. Its own keys are checked here (typos are errors); the settings it
 * overrides (environments, health, gates …) are merged over the top-level ones and validated as a
 * whole config by load.ts, so their rules live in one place.
 */
export const serviceSchema = z.strictObject({
  hosts: z.array(hostName).min(1, 'expected at least one host name'),
  /** Path prefixes under those hosts (absent: every path). */
  paths: z.array(z.string().startsWith('/', 'expected a path prefix starting with "/"')).optional(),
  /** Certificate files for this service's hosts (served by SNI), relative to the config file. */
  tls: tlsSchema.optional(),
  environments: z.unknown().optional(),
  health: z.unknown().optional(),
  gates: z.unknown().optional(),
  warmup: z.unknown().optional(),
  analysis: z.unknown().optional(),
  standby: z.unknown().optional(),
  database: z.unknown().optional(),
  notifications: z.unknown().optional(),
  switch: z.unknown().optional(),
});
/** The settings a service inherits from the top level and may override. */
export const SERVICE_INHERITED_KEYS = ['environments', 'health', 'gates', 'warmup', 'analysis', 'standby', 'database', 'notifications', 'switch'] as const;
const serviceName = z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/, 'expected a short name of letters, digits, ".", "_" or "-"');

/** The config object without its cross-field checks (for `.pick()` and key lookups: zod refuses them on refined schemas). */
export const configObjectSchema = z.strictObject({
  app: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/, 'expected a short name of letters, digits, ".", "_" or "-"').default('app'),
  router: routerSchema.default(() => routerSchema.parse({})),
  admin: adminSchema.default(() => adminSchema.parse({})),
  stateDir: z.string().min(1).default(d.DEFAULT_STATE_DIR),
  environments: environmentsSchema,
  health: healthSchema.default(() => healthSchema.parse({})),
  /** Each section with its defaults in a file of its own: gates.ts, analysis.ts, database.ts, notifications.ts. */
  gates: gatesSchema.default([]),
  warmup: warmupSchema.optional(),
  /** Absent: no post-switch analysis. Present (even `{}`): analysis with the defaults. */
  analysis: analysisSchema.optional(),
  standby: standbySchema.default(() => standbySchema.parse({})),
  /** Absent: the instant switch. `steps`: a gradual switch by request share (switch.ts). */
  switch: switchSchema.optional(),
  /** Shared database and its migrations (database.ts). */
  database: databaseSchema.optional(),
  notifications: notificationsSchema,
  /** Routers on several hosts behind etcd (fleet/schema.ts); absent = one machine. */
  fleet: fleetSchema.optional(),
  /** Many services on one router (absent: one service from the top-level keys). */
  services: z.record(serviceName, serviceSchema).optional(),
});

export const configSchema = configObjectSchema.superRefine((v, ctx) => {
  // What the other data planes cannot do yet is refused here, not silently skipped (docs/engines.md).
  // Zod runs this also when other fields failed: read defensively.
  const router = v.router as Partial<typeof v.router> | undefined;
  const mirrorAt = Array.isArray(v.gates) ? v.gates.findIndex((g) => g?.kind === 'mirror') : -1;
  if (router?.engine === 'haproxy' && (v.switch?.steps?.length ?? 0) > 0) ctx.addIssue({ code: 'custom', path: ['switch', 'steps'], message: 'a gradual switch needs router.engine "builtin" (the HAProxy engine switches all traffic at once)' });
  if (mirrorAt >= 0 && router !== undefined && (router.engine === 'haproxy' || (router.workers ?? 1) !== 1)) ctx.addIssue({ code: 'custom', path: ['gates', mirrorAt], message: 'a mirror gate needs router.engine "builtin" with router.workers 1' });
  if (v.services !== undefined && router !== undefined && (router.engine === 'haproxy' || (router.workers ?? 1) !== 1)) ctx.addIssue({ code: 'custom', path: ['services'], message: 'many services need router.engine "builtin" with router.workers 1' });
  const env = v.environments as Partial<typeof v.environments> | undefined;
  if (env?.process?.hosts !== undefined && v.fleet === undefined) ctx.addIssue({ code: 'custom', path: ['environments', 'process', 'hosts'], message: 'instances on agent hosts need fleet: (the agents meet the controller in etcd); remove hosts to run the instances on this host' });
  const tls = router?.tls as { listen?: unknown; acme?: unknown } | undefined;
  if ((tls?.listen !== undefined || tls?.acme !== undefined) && router !== undefined && (router.engine === 'haproxy' || (router.workers ?? 1) !== 1)) ctx.addIssue({ code: 'custom', path: ['router', 'tls'], message: 'router.tls.listen and router.tls.acme need router.engine "builtin" with router.workers 1' });
});

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.infer<typeof configSchema>;

/** A loaded config plus where it came from. `stateDir` is absolute. */
export interface LoadedConfig extends Omit<Config, 'services'> {
  readonly file: string | null;
  readonly baseDir: string;
  /**
   * `services:` resolved (absent: null, one service from the top-level keys): each service's
   * whole config, top-level keys merged under its own, `app` = its name, `stateDir` =
   * `<stateDir>/services/<name>`.
   */
  readonly services?: readonly LoadedService[] | null;
}

export interface LoadedService {
  readonly name: string;
  readonly hosts: readonly string[];
  readonly paths: readonly string[] | null;
  readonly tls: { cert: string; key: string } | null;
  readonly config: LoadedConfig;
}
