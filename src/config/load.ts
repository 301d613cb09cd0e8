/**
 * Loads cutover.yaml: YAML with positions (the `yaml` library), `${VAR}` substitution,
 * schema validation (zod), then a deep freeze. Every error names file, line and field:
 * `cutover.yaml:12: health.interval: expected a duration like "500ms", "30s" or "5m"`.
 */
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { CutoverError } from '../lib/errors.ts';
import { configObjectSchema, configSchema, SERVICE_INHERITED_KEYS, type Config, type LoadedConfig, type LoadedService } from './schema.ts';
import { DEFAULT_CONFIG_FILE } from './defaults.ts';

/** Alias expansions a config may make (the yaml library's default; anchors are rare in cutover.yaml). */
const MAX_ALIAS_COUNT = 100;

export interface ConfigProblem { file: string; line: number; field: string; message: string }

/** Thrown for any invalid config; `problems` has one entry per finding (the message lists them all). */
export class ConfigError extends CutoverError {
  readonly problems: ConfigProblem[];
  constructor(problems: ConfigProblem[]) {
    super('CUTOVER_ERR_CONFIG', problems.map(formatProblem).join('\n'), { details: { problems } });
    this.problems = problems;
  }
}

/** `cutover.yaml:12: health.interval: …`; a problem with no line (a missing file) has none. */
export function formatProblem(p: ConfigProblem): string {
  return `${p.file}${p.line > 0 ? `:${p.line}` : ''}: ${p.field ? `${p.field}: ` : ''}${p.message}`;
}

/** Resolve which config file a command uses: `-c FILE`, else ./cutover.yaml. */
export function resolveConfigPath(explicit: string | undefined, cwd = process.cwd()): string {
  return path.resolve(cwd, explicit ?? DEFAULT_CONFIG_FILE);
}

export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const shown = path.relative(process.cwd(), file) || file;
  if (!existsSync(file)) {
    throw new ConfigError([{ file: shown, line: 0, field: '', message: 'config file not found (run `cutover init` to write one)' }]);
  }
  return parseConfig(readFileSync(file, 'utf8'), { file: shown, baseDir: path.dirname(path.resolve(file)), env });
}

/** Top-level settings client commands (status, rollback, retire…) use: where the daemon is and its token. */
const CLIENT_KEYS = ['app', 'admin', 'stateDir'] as const;

/** What a client command needs of cutover.yaml. */
export type ClientConfig = Pick<LoadedConfig, 'app' | 'admin' | 'stateDir' | 'file' | 'baseDir'> & {
  /** Names under `services:` (null without it), so `--service` can be checked before any call. */
  readonly serviceNames: readonly string[] | null;
};

/**
 * Like loadConfigFile for client commands: the whole file is still validated (a typo is exit 2),
 * but an environment variable only the daemon needs (`${DATABASE_URL}` in `database.url`) may be
 * unset here; the fields that hold one are left unchecked. Those under `admin` and `stateDir` must
 * be set: the client uses them.
 */
export function loadClientConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): ClientConfig {
  const shown = path.relative(process.cwd(), file) || file;
  if (!existsSync(file)) {
    throw new ConfigError([{ file: shown, line: 0, field: '', message: 'config file not found (run `cutover init` to write one)' }]);
  }
  const opts = { file: shown, baseDir: path.dirname(path.resolve(file)), env };
  const { raw, doc, lineOf, unset } = readDocument(readFileSync(file, 'utf8'), opts, CLIENT_KEYS);
  const full = configSchema.safeParse(withServiceEnvironments(raw));
  if (!full.success) {
    const within = (p: PropertyKey[]) => unset.some((u) => u.every((seg, i) => String(p[i]) === String(seg)));
    const real = full.error.issues.filter((issue) => !within(issue.path));
    if (real.length > 0) throw new ConfigError(real.map((issue) => issueToProblem(issue, doc, opts.file, lineOf)));
  }
  const picked = Object.fromEntries(CLIENT_KEYS.filter((k) => k in raw).map((k) => [k, raw[k]]));
  const result = configObjectSchema.pick({ app: true, admin: true, stateDir: true }).safeParse(picked);
  if (!result.success) throw new ConfigError(result.error.issues.map((issue) => issueToProblem(issue, doc, opts.file, lineOf)));
  const cfg = result.data;
  const tls = cfg.admin.tls && { cert: path.resolve(opts.baseDir, cfg.admin.tls.cert), key: path.resolve(opts.baseDir, cfg.admin.tls.key) };
  const serviceNames = full.success && full.data.services ? Object.keys(full.data.services) : isPlainObject(raw.services) ? Object.keys(raw.services) : null;
  return deepFreeze({ app: cfg.app, admin: { ...cfg.admin, tls }, stateDir: path.resolve(opts.baseDir, cfg.stateDir), file: opts.file, baseDir: opts.baseDir, serviceNames });
}

/**
 * Parse YAML, substitute `${VAR}`, return the plain object. With `needed`, an unset variable
 * outside those top-level keys is not an error: its field's path is returned in `unset`.
 */
function readDocument(text: string, opts: { file: string; env?: NodeJS.ProcessEnv }, needed?: readonly string[]): { raw: Record<string, unknown>; doc: Document; lineOf: (o: number | undefined) => number; unset: (string | number)[][] } {
  const env = opts.env ?? process.env;
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const lineOf = (offset: number | undefined) => (offset === undefined ? 1 : lineCounter.linePos(offset).line);

  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => ({ file: opts.file, line: lineOf(e.pos[0]), field: '', message: `YAML: ${e.message.split('\n')[0]}` })));
  }
  const problems: ConfigProblem[] = [];
  const unset: (string | number)[][] = [];
  substituteEnv(doc.contents, env, [], (field, offset, message, at) => {
    if (needed && !needed.includes(String(at[0]))) unset.push(at);
    else problems.push({ file: opts.file, line: lineOf(offset), field, message });
  });
  if (problems.length > 0) throw new ConfigError(problems);
  return { raw: toPlain(doc, opts.file, lineOf), doc, lineOf, unset };
}

export function parseConfig(text: string, opts: { file: string; baseDir: string; env?: NodeJS.ProcessEnv }): LoadedConfig {
  const { raw, doc, lineOf } = readDocument(text, opts);
  const top = raw;
  const result = configSchema.safeParse(withServiceEnvironments(raw));
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((issue) => issueToProblem(issue, doc, opts.file, lineOf)));
  }
  const cfg = result.data;
  const loaded = finish(cfg, opts);
  if (cfg.services === undefined) {
    if (cfg.router.tls?.acme && !(cfg.router.tls.acme.hosts?.length)) {
      throw new ConfigError([{ file: opts.file, line: lineOfPath(doc, ['router', 'tls', 'acme'], lineOf), field: 'router.tls.acme', message: 'no host names to certify: list them in router.tls.acme.hosts, or use services: with hosts' }]);
    }
    return deepFreeze({ ...loaded, services: null });
  }
  return deepFreeze({ ...loaded, services: resolveServices(top, cfg, doc, opts, lineOf) });
}

/** Paths made absolute (relative to the config file) and the config's origin attached. */
function finish(cfg: Config, opts: { file: string; baseDir: string }): LoadedConfig {
  // Files named in the config are relative to the config file, like stateDir.
  const tlsFiles = <T extends { cert?: string; key?: string }>(t: T | undefined): T | undefined =>
    t && { ...t, ...(t.cert !== undefined ? { cert: path.resolve(opts.baseDir, t.cert) } : {}), ...(t.key !== undefined ? { key: path.resolve(opts.baseDir, t.key) } : {}) };
  const routerTls = tlsFiles(cfg.router.tls);
  const acme = routerTls?.acme;
  const { services: _services, ...rest } = cfg;
  return {
    ...rest,
    stateDir: path.resolve(opts.baseDir, cfg.stateDir),
    router: { ...cfg.router, tls: routerTls && acme?.caFile !== undefined ? { ...routerTls, acme: { ...acme, caFile: path.resolve(opts.baseDir, acme.caFile) } } : routerTls },
    admin: { ...cfg.admin, tls: tlsFiles(cfg.admin.tls) },
    environments: cfg.environments.process?.releaseDir
      ? { ...cfg.environments, process: { ...cfg.environments.process, releaseDir: path.resolve(opts.baseDir, cfg.environments.process.releaseDir) } }
      : cfg.environments,
    file: opts.file,
    baseDir: opts.baseDir,
  };
}

/**
 * Each service's whole config: the top-level settings with the service's own merged over them
 * (objects key by key, lists and values replaced, `null` removes an inherited setting), validated
 * as one config; an error inside what the service wrote points at the service's line.
 */
function resolveServices(top: Record<string, unknown>, cfg: Config, doc: Document, opts: { file: string; baseDir: string }, lineOf: (o: number | undefined) => number): LoadedService[] {
  const problems: ConfigProblem[] = [];
  const out: LoadedService[] = [];
  const services = cfg.services ?? {};
  const rawServices = top.services as Record<string, Record<string, unknown>>;
  const { services: _s, ...base } = top;
  for (const [name, svc] of Object.entries(services)) {
    const own = rawServices[name];
    const merged: Record<string, unknown> = { ...base, app: name, stateDir: path.join(cfg.stateDir, 'services', name) };
    for (const key of SERVICE_INHERITED_KEYS) {
      if (!(key in own)) continue;
      const v = mergeSetting(base[key], own[key]);
      if (v === undefined) delete merged[key];
      else merged[key] = v;
    }
    const r = configSchema.safeParse(merged);
    if (!r.success) {
      for (const issue of r.error.issues) {
        const segs = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
        // Written by the service (at least its first key): point there; else at the inherited top-level line.
        const mine = segs.length > 0 && typeof segs[0] === 'string' && (SERVICE_INHERITED_KEYS as readonly string[]).includes(segs[0]) && segs[0] in own;
        problems.push(issueToProblem(mine ? { ...issue, path: ['services', name, ...segs] } : issue, doc, opts.file, lineOf, mine ? undefined : `services.${name}: inherited `));
      }
      continue;
    }
    const tls = svc.tls ? { cert: path.resolve(opts.baseDir, svc.tls.cert), key: path.resolve(opts.baseDir, svc.tls.key) } : null;
    if (cfg.router.tls?.acme && tls === null) {
      for (const h of svc.hosts) {
        if (h.startsWith('*.')) problems.push({ file: opts.file, line: lineOfPath(doc, ['services', name, 'hosts'], lineOf), field: `services.${name}.hosts`, message: `${h}: ACME HTTP-01 cannot certify a wildcard name; give this service tls.cert and tls.key` });
      }
    }
    out.push({ name, hosts: svc.hosts, paths: svc.paths ?? null, tls, config: { ...finish(r.data, opts), services: null } });
  }
  // Two services claiming one host and path prefix (router/service-map.ts matches the same way).
  const claimed = new Map<string, string>();
  for (const s of out) {
    for (const host of s.hosts) {
      for (const raw of s.paths ?? ['/']) {
        const prefix = raw.length > 1 && raw.endsWith('/') ? raw.slice(0, -1) : raw;
        const key = `${host} ${prefix}`;
        const other = claimed.get(key);
        if (other !== undefined && other !== s.name) {
          problems.push({ file: opts.file, line: lineOfPath(doc, ['services', s.name, 'hosts'], lineOf), field: `services.${s.name}.hosts`, message: `${host}${prefix === '/' ? '' : prefix} is already routed to service ${other}` });
        } else claimed.set(key, s.name);
      }
    }
  }
  const def = cfg.router.defaultService;
  if (def !== undefined && !(def in services)) {
    problems.push({ file: opts.file, line: lineOfPath(doc, ['router', 'defaultService'], lineOf), field: 'router.defaultService', message: `no service named ${JSON.stringify(def)} (services: ${Object.keys(services).join(', ')})` });
  }
  if (out.length === 0 && problems.length === 0) problems.push({ file: opts.file, line: lineOfPath(doc, ['services'], lineOf), field: 'services', message: 'expected at least one service' });
  if (problems.length > 0) throw new ConfigError(problems);
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A service's value over the inherited one: objects merged key by key, anything else replaces; null removes. */
function mergeSetting(inherited: unknown, own: unknown): unknown {
  if (own === null) return undefined;
  if (!isPlainObject(inherited) || !isPlainObject(own)) return own;
  const out: Record<string, unknown> = { ...inherited };
  for (const [k, v] of Object.entries(own)) {
    const m = mergeSetting(inherited[k], v);
    if (m === undefined) delete out[k];
    else out[k] = m;
  }
  return out;
}

/** With services, the top level may leave `environments` to each service (the first one that has them stands in). */
function withServiceEnvironments(raw: Record<string, unknown>): Record<string, unknown> {
  const services = raw.services;
  if (!isPlainObject(services) || raw.environments !== undefined) return raw;
  const first = (Object.values(services) as unknown[]).find((v) => isPlainObject(v) && v.environments !== undefined) as Record<string, unknown> | undefined;
  return { ...raw, environments: first?.environments };
}

function toPlain(doc: Document, file: string, lineOf: (o: number | undefined) => number): Record<string, unknown> {
  let raw: unknown;
  try {
    // Caps alias expansion (yaml's maxAliasCount): an alias bomb is an error, not an OOM.
    raw = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT }) ?? {};
  } catch (err) {
    // An alias to an anchor defined later or not at all, or too many aliases (the `yaml` library
    // throws these from toJS, not as document errors): point at the first alias.
    let at: number | undefined;
    visit(doc, { Alias(_key, node) { at = node.range?.[0]; return visit.BREAK; } });
    throw new ConfigError([{ file, line: lineOf(at), field: '', message: `YAML: ${(err as Error).message}` }]);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError([{ file, line: 1, field: '', message: 'expected a mapping of settings (app:, router:, environments: …)' }]);
  }
  return raw as Record<string, unknown>;
}

/** `${NAME}` and `${NAME:-default}` in scalar strings, replaced in place from the environment. */
function substituteEnv(node: unknown, env: NodeJS.ProcessEnv, at: (string | number)[], report: (field: string, offset: number | undefined, msg: string, at: (string | number)[]) => void): void {
  if (isMap(node)) {
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : '?';
      substituteEnv(pair.value, env, [...at, key], report);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => substituteEnv(item, env, [...at, i], report));
  } else if (isScalar(node) && typeof node.value === 'string' && node.value.includes('${')) {
    node.value = node.value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, fallback: string | undefined) => {
      const v = env[name];
      if (v !== undefined && v !== '') return v;
      if (fallback !== undefined) return fallback;
      report(formatPath(at), node.range?.[0], `environment variable ${name} is not set`, at);
      return '';
    });
  }
}

function issueToProblem(issue: z.core.$ZodIssue, doc: Document, file: string, lineOf: (o: number | undefined) => number, prefix = ''): ConfigProblem {
  let segs = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') {
    // Point at the unknown key itself, which is most likely a typo.
    const key = issue.keys[0];
    const known = knownKeys(segs);
    const hint = (k: string) => { const m = didYouMean(k, known); return m ? ` (did you mean "${m}"?)` : ''; };
    message = issue.keys.length === 1 ? `unknown setting "${key}"${hint(key)}` : `unknown settings ${issue.keys.map((k) => `"${k}"${hint(k)}`).join(', ')}`;
    segs = [...segs, key];
  } else if (issue.code === 'invalid_type' && /received undefined/.test(issue.message)) {
    message = `required setting is missing (${issue.message.replace('Invalid input: ', '')})`;
  } else {
    message = message.replace(/^Invalid input: /, '');
  }
  return { file, line: lineOfPath(doc, segs, lineOf), field: formatPath(segs), message: `${prefix}${message}` };
}

/** Zod wrappers between a field and the object it holds: default, optional, prefault, pipe… */
function unwrap(schema: z.core.$ZodType): z.core.$ZodType {
  let s = schema;
  for (let i = 0; i < 10; i++) {
    const def = s._zod.def as { type: string; innerType?: z.core.$ZodType; in?: z.core.$ZodType; element?: z.core.$ZodType };
    if (def.innerType) s = def.innerType;
    else if (def.type === 'pipe' && def.in) s = def.in;
    else return s;
  }
  return s;
}

/** The setting names of the config object at `segs` (e.g. ['router'] → listen, preview, …); [] when unknown. */
function knownKeys(segs: (string | number)[]): string[] {
  let s = unwrap(configObjectSchema);
  for (const seg of segs) {
    const def = s._zod.def as { type: string; shape?: Record<string, z.core.$ZodType>; element?: z.core.$ZodType; valueType?: z.core.$ZodType };
    const next = typeof seg === 'number' ? def.element : def.shape?.[seg] ?? def.valueType;
    if (!next) return [];
    s = unwrap(next);
  }
  const shape = (s._zod.def as { shape?: Record<string, unknown> }).shape;
  return shape ? Object.keys(shape) : [];
}

/** The known name a typo most likely meant: edit distance at most 2 (1 for short names), or a case slip. */
export function didYouMean(typed: string, known: string[]): string | null {
  let best: string | null = null;
  let bestD = Infinity;
  for (const k of known) {
    const d = k.toLowerCase() === typed.toLowerCase() ? 0 : editDistance(typed.toLowerCase(), k.toLowerCase());
    if (d < bestD) { best = k; bestD = d; }
  }
  const limit = typed.length <= 4 ? 1 : 2;
  return best !== null && bestD <= limit ? best : null;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}

/** The line of the deepest node along `segs` that exists (a missing key points at its parent). */
function lineOfPath(doc: Document, segs: (string | number)[], lineOf: (o: number | undefined) => number): number {
  for (let n = segs.length; n >= 0; n--) {
    const prefix = segs.slice(0, n);
    if (prefix.length === 0) return 1;
    const parent = doc.getIn(prefix.slice(0, -1), true) as Node | undefined;
    if (isMap(parent)) {
      const pair = parent.items.find((p) => isScalar(p.key) && String(p.key.value) === String(prefix[prefix.length - 1]));
      if (pair && isScalar(pair.key)) return lineOf(pair.key.range?.[0]);
    }
    const node = doc.getIn(prefix, true) as Node | undefined;
    if (node && node.range) return lineOf(node.range[0]);
  }
  return 1;
}

function formatPath(segs: (string | number)[]): string {
  return segs.reduce<string>((s, p) => (typeof p === 'number' ? `${s}[${p}]` : s === '' ? p : `${s}.${p}`), '');
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}
