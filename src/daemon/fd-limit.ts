/**
 * File descriptors: raise the soft RLIMIT_NOFILE to the hard limit at start, and work out how many
 * client connections each listener may take so that upstream connections, health checks, the
 * admin API, logs and the state database always find a descriptor (issue #15: 10,500 slow clients
 * used them all up and everyone got 502s and failing health checks for 42 s).
 *
 * Node.js raises the soft limit to the hard one itself when it starts (node.cc, PlatformInit), so
 * usually there is nothing left to do: the daemon reads the limit it got and sizes the listeners
 * from it. Should the soft limit still be lower (another runtime, a wrapper that lowered it), Node
 * has no setrlimit(2) and Cutover uses no native code, so it is raised with
 * `prlimit --pid <own pid> --nofile=HARD:HARD` (util-linux; prlimit(2) lets a process of the same
 * user raise another's soft limit up to its hard limit — no re-exec, no privilege). Without
 * prlimit the daemon says so and keeps the limit it was given. The hard limit is the operator's:
 * `ulimit -Hn` / `LimitNOFILE=` in a systemd unit.
 *
 * Owns: reading and raising the limit, the connection budget. Must never: lower a limit, or
 * raise the hard limit.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Descriptors kept free of client connections and their upstreams: 1024, at most a quarter of the limit. */
export const DEFAULT_DESCRIPTOR_RESERVE = 1_024;
/** The live listener's share of the client connections when `router.maxConnections` is `auto`: 90 %. */
export const LIVE_SHARE = 0.9;
/** Never fewer client connections per listener than this, whatever the arithmetic says: 64. */
export const MIN_CONNECTIONS = 64;
/** Linux's default fs.nr_open; a soft limit is never raised past it: 1,048,576. */
const MAX_RAISE = 1_048_576;

export interface NofileLimit { soft: number; hard: number }

/** `Max open files` of /proc/self/limits (or of `pid`); null where /proc is not there. */
export function readNofile(pid: number | 'self' = 'self'): NofileLimit | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/limits`, 'utf8');
  } catch {
    return null;
  }
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
  if (!m) return null;
  const num = (v: string) => (v === 'unlimited' ? Number.POSITIVE_INFINITY : Number(v));
  return { soft: num(m[1]), hard: num(m[2]) };
}

export interface RaiseResult {
  before: NofileLimit | null;
  after: NofileLimit | null;
  raised: boolean;
  /** Why it was not raised when it could have been; null when it was, or there was nothing to do. */
  problem: string | null;
}

/** Soft limit up to the hard limit (capped at 1,048,576) through prlimit(1). */
export function raiseNofile(): RaiseResult {
  const before = readNofile();
  if (before === null) return { before, after: before, raised: false, problem: null };
  const target = Math.min(before.hard, MAX_RAISE);
  if (before.soft >= target) return { before, after: before, raised: false, problem: null };
  const r = spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${target}:${Number.isFinite(before.hard) ? before.hard : 'unlimited'}`], { encoding: 'utf8', timeout: 5_000 });
  const after = readNofile();
  if (after !== null && after.soft > before.soft) return { before, after, raised: true, problem: null };
  const why = r.error ? ((r.error as NodeJS.ErrnoException).code === 'ENOENT' ? 'prlimit (util-linux) is not installed' : r.error.message) : (r.stderr || `prlimit exited ${r.status}`).trim();
  return {
    before, after, raised: false,
    problem: `the descriptor limit stays at ${before.soft} (hard limit ${before.hard}): ${why}; raise it with \`ulimit -n ${target}\` before \`cutover up\` (or LimitNOFILE= in a systemd unit)`,
  };
}

export interface ConnectionBudget {
  /** Descriptors the soft limit allows. */
  limit: number;
  reserve: number;
  live: number;
  preview: number;
}

/**
 * Client connections per listener. Each may hold one upstream connection too (a proxied request
 * or WebSocket), so the clients get half of what the reserve leaves. `configured` numbers win.
 */
export function connectionBudget(limit: number, o: { live: number | 'auto'; preview: number | 'auto'; reserve?: number; hasPreview: boolean }): ConnectionBudget {
  const finite = Number.isFinite(limit) ? limit : MAX_RAISE;
  const reserve = o.reserve ?? Math.min(DEFAULT_DESCRIPTOR_RESERVE, Math.floor(finite / 4));
  const clients = Math.max(MIN_CONNECTIONS * 2, Math.floor((finite - reserve) / 2));
  const liveAuto = o.hasPreview ? Math.floor(clients * LIVE_SHARE) : clients;
  return {
    limit: finite,
    reserve,
    live: o.live === 'auto' ? Math.max(MIN_CONNECTIONS, liveAuto) : o.live,
    preview: o.preview === 'auto' ? Math.max(MIN_CONNECTIONS, clients - liveAuto) : o.preview,
  };
}
