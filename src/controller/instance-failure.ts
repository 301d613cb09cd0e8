/**
 * Says why an instance failed, in words an operator can act on: how it ended (exit code or
 * signal), the last lines it wrote and where its whole log is (issue 16: "the reason was only in
 * .cutover/logs/green-0.log"). Reads only what the provider offers; never throws.
 */
import type { EnvironmentProvider } from '../environments/types.ts';

/** Lines of an instance's own output quoted in a failure (details and CLI): 5. */
export const FAILURE_LOG_LINES = 5;
/** Longest quoted log line in a one-line message: 300 characters. */
const MAX_QUOTED_LINE = 300;
/** Lines Cutover itself writes into an instance log (start and exit markers). */
const OWN_LINE = /^\[cutover \d{4}-\d\d-\d\dT[^\]]*\] /;

export interface InstanceFailure {
  id: string;
  exit: { code: number | null; signal: string | null } | null;
  /** The instance's last output lines (Cutover's own markers left out), oldest first. */
  log: string[];
  logPath: string | null;
}

/** "code 3", "signal SIGKILL"; null when unknown (an adopted process is not our child). */
export function exitText(exit: { code: number | null; signal: string | null } | null): string | null {
  if (!exit) return null;
  if (exit.signal) return `signal ${exit.signal}`;
  return exit.code === null ? null : `code ${exit.code}`;
}

export async function describeInstanceFailure(provider: EnvironmentProvider, id: string, exit?: { code: number | null; signal: string | null } | null): Promise<InstanceFailure> {
  let log: string[] = [];
  if (provider.logTail) {
    try {
      log = (await provider.logTail(id, 50)).filter((l) => !OWN_LINE.test(l) && l.trim() !== '').slice(-FAILURE_LOG_LINES);
    } catch {
      log = [];
    }
  }
  let logPath: string | null = null;
  try { logPath = provider.logPath?.(id) ?? null; } catch { logPath = null; }
  return { id, exit: exit ?? provider.lastExit?.(id) ?? null, log, logPath };
}

/**
 * The tail of a one-line message: `; last log line: "DATABASE_URL is not set" (log: /srv/.cutover/logs/green-0.log)`.
 * Empty when the provider keeps no logs (static targets).
 */
export function failureNote(f: InstanceFailure): string {
  if (f.logPath === null && f.log.length === 0) return '';
  const where = f.logPath !== null ? ` (log: ${f.logPath})` : '';
  const last = f.log.at(-1);
  if (last === undefined) return `; it wrote nothing to its log${where}`;
  const quoted = last.length > MAX_QUOTED_LINE ? `${last.slice(0, MAX_QUOTED_LINE)}…` : last;
  return `; last log line: ${JSON.stringify(quoted.trim())}${where}`;
}
