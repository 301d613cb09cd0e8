/**
 * The environment Cutover hands to the processes it starts: application instances, command gates,
 * and its own helpers (pg_dump/psql of the compatibility run). Owns the allow-list of what passes
 * from the daemon's environment and the deny rules that always win.
 *
 * Must never: let Cutover's own variables (`CUTOVER_*`: the admin token, webhook secrets named
 * that way, test hooks) or any configured secret value (the admin token, `notifications[].secret`,
 * notification header values) reach a child — whatever an allow-list says. Before issue #15 every
 * instance inherited the daemon's whole environment, `CUTOVER_TOKEN` included.
 */

/**
 * What instances and gates get from the daemon's environment by default: what a process needs
 * to find programs, its home, its locale and time zone, temp space and CA bundles. Nothing else:
 * an application's own settings go in `environments.process.env`, or are named in
 * `environments.process.inheritEnv`.
 */
export const BASE_INHERITED_ENV: readonly string[] = Object.freeze([
  'PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'LANG', 'LANGUAGE', 'LC_*', 'TZ', 'TMPDIR', 'TERM',
  'NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'SSL_CERT_DIR',
]);

/** A name or a `PREFIX_*` pattern, as written in `inheritEnv`. */
export const ENV_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*\*?$/;

/** Cutover's own variables: never passed to a child, even when listed. */
export function isCutoverVariable(name: string): boolean {
  return name.toUpperCase().startsWith('CUTOVER_');
}

/** Secret values shorter than this are not searched for in other variables (too many false hits): 8. */
const MIN_SECRET_CHARS = 8;

export interface ChildEnvOptions {
  /** Names or `PREFIX_*` patterns passed on besides `BASE_INHERITED_ENV`. `['*']` passes everything not denied. */
  inherit?: readonly string[];
  /** Values that must not appear in any passed variable (token, webhook secrets). */
  secrets?: Iterable<string>;
}

function matcher(patterns: readonly string[]): (name: string) => boolean {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const p of patterns) {
    if (p.endsWith('*')) prefixes.push(p.slice(0, -1));
    else exact.add(p);
  }
  return (name) => exact.has(name) || prefixes.some((pre) => name.startsWith(pre));
}

/**
 * The allowed part of `from`: names in the base list or in `inherit`, minus Cutover's own
 * variables, minus any variable whose value holds a secret. Returns a fresh object.
 */
export function inheritedEnv(from: NodeJS.ProcessEnv, o: ChildEnvOptions = {}): Record<string, string> {
  const allowed = matcher([...BASE_INHERITED_ENV, ...(o.inherit ?? [])]);
  const secrets = [...(o.secrets ?? [])].filter((s) => s.length >= MIN_SECRET_CHARS);
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(from)) {
    if (value === undefined || !allowed(name) || isCutoverVariable(name)) continue;
    if (secrets.some((s) => value.includes(s))) continue;
    out[name] = value;
  }
  return out;
}

/** For Cutover's own helpers (pg_dump, psql): the whole environment minus Cutover's variables and secrets. */
export function withoutCutoverSecrets(from: NodeJS.ProcessEnv, secrets: Iterable<string> = []): Record<string, string> {
  return inheritedEnv(from, { inherit: ['*'], secrets });
}
