/**
 * Reading and signalling OS processes for the process provider (Linux `/proc`).
 * Owns: identity checks (is this pid still the process we started?) and process-group signals.
 * Must never signal a process it has not first identified as ours; callers decide that.
 */
import { readFile, readdir } from 'node:fs/promises';

/** The fields of `/proc/<pid>/stat` we use. */
export interface ProcStat {
  /** One-letter state: R, S, D, Z (zombie), T… */
  state: string;
  /** Process group id; equals pid for the group leaders we spawn with `detached: true`. */
  pgrp: number;
  /**
   * Start time in clock ticks since boot. With the pid it identifies one process for the
   * life of the machine: a reused pid has a later start time.
   */
  startTime: string;
}

/** `/proc/<pid>/stat`, or null when the process is gone (or /proc is unavailable). */
export async function readStat(pid: number): Promise<ProcStat | null> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may itself contain spaces or ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); field N is rest[N - 3].
  return { state: rest[0], pgrp: Number(rest[2]), startTime: rest[19] };
}

/**
 * The environment a process was exec'd with (`/proc/<pid>/environ`), or null when the process
 * is gone or not readable by us (another user's process is never ours).
 */
export async function readEnviron(pid: number): Promise<Map<string, string> | null> {
  let buf: Buffer;
  try {
    buf = await readFile(`/proc/${pid}/environ`);
  } catch {
    return null;
  }
  const env = new Map<string, string>();
  for (const entry of buf.toString('utf8').split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return env;
}

/** True when `pid` is running (not a zombie) and, if given, has the recorded start time. */
export async function isAlive(pid: number, startTime?: string | null): Promise<boolean> {
  const stat = await readStat(pid);
  if (stat === null || stat.state === 'Z') return false;
  return startTime == null || stat.startTime === startTime;
}

/** Pids of all processes visible in /proc. */
export async function listPids(): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir('/proc');
  } catch {
    return [];
  }
  return names.filter((n) => /^\d+$/.test(n)).map(Number);
}

/** Whether any process in group `pgid` still exists (zombies included). */
export function groupExists(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    // EPERM: something exists that we may not signal; it is not gone.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Send `signal` to a whole process group (`group`) or one pid. Returns false when there was
 * nothing to signal. Never throws: a failed signal is the caller's to notice by waiting.
 */
export function sendSignal(pid: number, signal: NodeJS.Signals, group: boolean): boolean {
  try {
    process.kill(group ? -pid : pid, signal);
    return true;
  } catch {
    return false;
  }
}
