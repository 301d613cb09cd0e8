/**
 * The `database:` section of cutover.yaml: where the shared database is, where a release keeps
 * its migration files, how strictly the linter gates them, and how the two-version
 * compatibility run behaves. Imported by config/schema.ts; types come from here (z.infer).
 */
import { z } from 'zod';
import { duration } from './fields.ts';

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

const compatibilitySchema = z.strictObject({
  /** Run the old and the new release against a shadow copy of the database before applying expand migrations. */
  enabled: z.boolean().default(true),
  /** Rows copied per table into the shadow database (0: schema only). */
  sampleRows: z.int().min(0).max(10_000).default(DEFAULT_SAMPLE_ROWS),
  /** Extra GET paths that must answer 2xx on both versions (besides `/`, the health path and the http gates). */
  paths: z.array(z.string().startsWith('/', 'expected a path starting with "/"')).default([]),
  startTimeout: duration.default(DEFAULT_COMPAT_START_TIMEOUT_MS),
  requestTimeout: duration.default(DEFAULT_COMPAT_REQUEST_TIMEOUT_MS),
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
export type DbEngine = 'postgres' | 'mysql';

/** The engine a config means: explicit, else from the URL scheme. */
export function engineOf(cfg: Pick<DatabaseConfig, 'url' | 'engine'>): DbEngine {
  if (cfg.engine) return cfg.engine;
  return /^(mysql|mariadb):/.test(cfg.url) ? 'mysql' : 'postgres';
}
