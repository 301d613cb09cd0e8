/**
 * The `database:` section of cutover.yaml: where the shared database is, where a release keeps
 * its migration files, how strictly the linter gates them, and how the two-version
 * compatibility run behaves. Imported by config/schema.ts; types come from here (z.infer).
 */
import { z } from 'zod';
import { byteSize, duration } from './fields.ts';

export const DEFAULT_MIGRATIONS_DIR = './migrations';
export const DEFAULT_TRACKING_TABLE = 'cutover_migrations';
export const DEFAULT_URL_ENV = 'DATABASE_URL';
/** Rows copied per table into the shadow database: 100. */
export const DEFAULT_SAMPLE_ROWS = 100;
/** Time for an old or new instance started against the shadow database to answer its health check: 30 seconds. */
export const DEFAULT_COMPAT_START_TIMEOUT_MS = 30_000;
/** Time for one check request of the compatibility run: 10 seconds. */
export const DEFAULT_COMPAT_REQUEST_TIMEOUT_MS = 10_000;
/** How long a migration statement may wait for a lock before it fails (PostgreSQL lock_timeout, MySQL lock_wait_timeout): 10 seconds. */
export const DEFAULT_LOCK_TIMEOUT_MS = 10_000;

/** Requests kept in the traffic sample: 200. */
export const DEFAULT_SAMPLE_REQUESTS = 200;
/** Requests kept per endpoint (method and path, ids folded): 5. */
export const DEFAULT_SAMPLE_PER_ENDPOINT = 5;
/** Longest request body kept in the sample: 64 KiB (a longer one is not sampled). */
export const DEFAULT_SAMPLE_MAX_BODY_BYTES = 64 * 1024;

const HTTP_METHODS = ['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
const headerName = z.string().regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, 'expected an HTTP header name');

/**
 * The traffic sample: live requests (writes included) the router copies, redacted before they
 * are kept, replayed by the compatibility run on the shadow database and (the read-only ones)
 * against the standby after each migration.
 */
const sampleSchema = z.strictObject({
  enabled: z.boolean().default(true),
  maxRequests: z.int().min(1).max(5_000).default(DEFAULT_SAMPLE_REQUESTS),
  perEndpoint: z.int().min(1).max(100).default(DEFAULT_SAMPLE_PER_ENDPOINT),
  methods: z.array(z.enum(HTTP_METHODS)).min(1).default(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']),
  /** Path prefixes to sample (default: everything). */
  paths: z.array(z.string().startsWith('/', 'expected a path starting with "/"')).default(['/']),
  /** Path prefixes never sampled (e.g. /payments). */
  exclude: z.array(z.string().startsWith('/', 'expected a path starting with "/"')).default([]),
  maxBodySize: byteSize.default(DEFAULT_SAMPLE_MAX_BODY_BYTES),
  /** Headers whose values are redacted, besides the built-in ones (Authorization, Cookie values, API keys, tokens). */
  redactHeaders: z.array(headerName).default([]),
  /** Query parameters and JSON/form body fields whose values are redacted, besides the built-in names (token, password, secret, key…). */
  redactFields: z.array(z.string().min(1)).default([]),
  /** Headers set on every replayed request, e.g. a test credential: `Authorization: Bearer ${REPLAY_TOKEN}`. */
  headers: z.record(headerName, z.string()).default({}),
});

/** One request the compatibility run sends to both versions on the shadow database only. */
const compatRequestSchema = z.strictObject({
  method: z.enum(HTTP_METHODS).default('GET'),
  path: z.string().startsWith('/', 'expected a path starting with "/"'),
  headers: z.record(headerName, z.string()).default({}),
  /** A string body, or any other YAML value sent as JSON (content-type application/json). */
  body: z.unknown().optional(),
  /** The status it must answer: a number, or a class like "2xx" (default). */
  status: z.union([z.int().min(100).max(599), z.string().regex(/^[1-5]xx$/, 'expected a status like 201 or "2xx"')]).default('2xx'),
});

const compatibilitySchema = z.strictObject({
  /** Run the old and the new release against a shadow copy of the database before applying expand migrations. */
  enabled: z.boolean().default(true),
  /** Rows copied per table into the shadow database (0: schema only). */
  sampleRows: z.int().min(0).max(10_000).default(DEFAULT_SAMPLE_ROWS),
  /** Extra GET paths that must answer 2xx on both versions (besides `/`, the health path and the http gates). */
  paths: z.array(z.string().startsWith('/', 'expected a path starting with "/"')).default([]),
  startTimeout: duration.default(DEFAULT_COMPAT_START_TIMEOUT_MS),
  requestTimeout: duration.default(DEFAULT_COMPAT_REQUEST_TIMEOUT_MS),
  /** Recorded live traffic, replayed on the shadow database against both versions. */
  sample: sampleSchema.prefault({}),
  /** Extra requests (writes too) sent to both versions on the shadow database only, never to the real one. */
  requests: z.array(compatRequestSchema).default([]),
});

export const databaseSchema = z.strictObject({
  /** Connection URL of the shared database: postgres://… or mysql://… (use ${DATABASE_URL}). */
  url: z.string().regex(/^(postgres(ql)?|mysql|mariadb):\/\//, 'expected a URL like postgres://user@host:5432/db or mysql://user@host:3306/db'),
  /** Migration files' folder, relative to the release directory. */
  migrations: z.string().min(1).default(DEFAULT_MIGRATIONS_DIR),
  /** postgres or mysql (MariaDB too); default: from the URL's scheme. */
  engine: z.enum(['postgres', 'mysql']).optional(),
  /**
   * `error` (default): a lint error stops the deployment. `warn`: lint errors are recorded as an
   * override event and the deployment continues (the compatibility run still guards the switch).
   */
  lint: z.enum(['error', 'warn']).default('error'),
  /** Name of the table that records applied and pending migrations. */
  table: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, 'expected a plain table name').default(DEFAULT_TRACKING_TABLE),
  /** Environment variable that carries the database URL to instances (overridden for the compatibility run). */
  urlEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name').default(DEFAULT_URL_ENV),
  lockTimeout: duration.default(DEFAULT_LOCK_TIMEOUT_MS),
  compatibility: compatibilitySchema.prefault({}),
});

export type DatabaseConfig = z.infer<typeof databaseSchema>;
export type SampleConfig = DatabaseConfig['compatibility']['sample'];
export type CompatRequest = DatabaseConfig['compatibility']['requests'][number];
export type DbEngine = 'postgres' | 'mysql';

/** The engine a config means: explicit, else from the URL scheme. */
export function engineOf(cfg: Pick<DatabaseConfig, 'url' | 'engine'>): DbEngine {
  if (cfg.engine) return cfg.engine;
  return /^(mysql|mariadb):/.test(cfg.url) ? 'mysql' : 'postgres';
}
