/**
 * Parity report: how the candidate's settings differ from the live colour's — instance count,
 * environment variable names (never values) of a running instance, and the release's own
 * configuration files. Drift is a warning recorded as an event, never a failure: a new release
 * may add a variable on purpose, and an operator should see it before the switch, not after.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** Variables set per instance by Cutover or by the shell; they differ by design. */
const IGNORED_ENV = /^(?:CUTOVER_.*|PORT|_|PWD|OLDPWD|SHLVL|INIT_CWD)$/;
/** Files at the top of a release directory that configure it. */
const CONFIG_FILE = /^(?:\.env(?:\..+)?|\.nvmrc|\.node-version|\.tool-versions|.+\.(?:json|ya?ml|toml|ini|conf))$/;
/** Lock files change with every dependency bump: not configuration drift worth a warning. */
const IGNORED_FILES = new Set(['package-lock.json', 'npm-shrinkwrap.json', 'yarn.lock', 'pnpm-lock.yaml']);

export interface ColorSettings {
  color: string;
  version: string | null;
  path: string | null;
  instances: number;
  healthy: number;
  /** Process ids of the colour's instances (process provider); empty for static targets. */
  pids: (number | null)[];
}

export interface ParityReport {
  drift: string[];
  candidate: Facts;
  live: Facts;
}

interface Facts {
  color: string;
  version: string | null;
  instances: number;
  healthy: number;
  envNames: string[] | null;
  configFiles: string[] | null;
  dotenvKeys: string[] | null;
  engines: Record<string, string> | null;
  nodeVersionFile: string | null;
}

export function parityReport(candidate: ColorSettings, live: ColorSettings, readEnv: (pid: number) => string[] | null = envNamesOf): ParityReport {
  const c = facts(candidate, readEnv);
  const l = facts(live, readEnv);
  const drift: string[] = [];
  if (c.instances !== l.instances) drift.push(`instances: candidate runs ${c.instances}, live runs ${l.instances}`);
  if (c.healthy !== l.healthy) drift.push(`healthy instances: candidate ${c.healthy}, live ${l.healthy}`);
  diffSets('environment variables', c.envNames, l.envNames, drift);
  diffSets('config files', c.configFiles, l.configFiles, drift);
  diffSets('.env keys', c.dotenvKeys, l.dotenvKeys, drift);
  if (c.engines !== null && l.engines !== null && JSON.stringify(c.engines) !== JSON.stringify(l.engines)) {
    drift.push(`package.json engines: candidate ${JSON.stringify(c.engines)}, live ${JSON.stringify(l.engines)}`);
  }
  if (c.nodeVersionFile !== l.nodeVersionFile && c.nodeVersionFile !== null && l.nodeVersionFile !== null) {
    drift.push(`node version file: candidate ${c.nodeVersionFile}, live ${l.nodeVersionFile}`);
  }
  return { drift, candidate: c, live: l };
}

function facts(s: ColorSettings, readEnv: (pid: number) => string[] | null): Facts {
  const pid = s.pids.find((p): p is number => typeof p === 'number');
  const env = pid !== undefined ? readEnv(pid) : null;
  return {
    color: s.color, version: s.version, instances: s.instances, healthy: s.healthy,
    envNames: env === null ? null : env.filter((n) => !IGNORED_ENV.test(n)).sort(),
    configFiles: s.path !== null ? configFiles(s.path) : null,
    dotenvKeys: s.path !== null ? dotenvKeys(s.path) : null,
    engines: s.path !== null ? engines(s.path) : null,
    nodeVersionFile: s.path !== null ? nodeVersion(s.path) : null,
  };
}

function diffSets(what: string, cand: string[] | null, live: string[] | null, out: string[]): void {
  if (cand === null || live === null) return;
  const added = cand.filter((x) => !live.includes(x));
  const removed = live.filter((x) => !cand.includes(x));
  if (added.length > 0) out.push(`${what} only in the candidate: ${added.join(', ')}`);
  if (removed.length > 0) out.push(`${what} only in live: ${removed.join(', ')}`);
}

/** Names of a process's environment variables (Linux /proc); null when unreadable. Values are never kept. */
export function envNamesOf(pid: number): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter((e) => e.includes('=')).map((e) => e.slice(0, e.indexOf('=')));
  } catch {
    return null;
  }
}

function configFiles(dir: string): string[] | null {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isFile() && CONFIG_FILE.test(e.name) && !IGNORED_FILES.has(e.name)).map((e) => e.name).sort();
  } catch {
    return null;
  }
}

function dotenvKeys(dir: string): string[] | null {
  const file = path.join(dir, '.env');
  if (!existsSync(file)) return [];
  try {
    return readFileSync(file, 'utf8').split('\n')
      .map((l) => /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=/.exec(l)?.[1])
      .filter((k): k is string => k !== undefined).sort();
  } catch {
    return null;
  }
}

function engines(dir: string): Record<string, string> | null {
  try {
    const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { engines?: Record<string, string> };
    return pkg.engines ?? {};
  } catch {
    return null;
  }
}

function nodeVersion(dir: string): string | null {
  for (const f of ['.nvmrc', '.node-version']) {
    try {
      return `${f} ${readFileSync(path.join(dir, f), 'utf8').trim()}`;
    } catch { /* next */ }
  }
  return null;
}
