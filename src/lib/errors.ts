/**
 * One error root for Cutover. Callers branch on `code`, never on message text.
 * The table below is the only place codes are defined, with the HTTP status the admin API
 * answers and the exit code the CLI ends with for each; add, never rename.
 * (The same table is in README.md, "Error codes"; test/error-codes.test.ts holds them together.)
 */

/**
 * Exit codes of the CLI contract. `cutover up` adds two for a supervisor (systemd
 * `RestartPreventExitStatus=4 5`): 4 another daemon holds the state directory, 5 the state cannot
 * be trusted (an operator must look: `cutover state check`). Any other failure to start is 1
 * (2 for a config error); a restart may well succeed.
 */
export const EXIT = { OK: 0, FAILED: 1, USAGE: 2, UNREACHABLE: 3, ALREADY_RUNNING: 4, STATE_DAMAGED: 5 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export interface ErrorSpec {
  /** What the code means, in a few words. */
  summary: string;
  /** HTTP status of an admin API answer carrying this code. */
  http: number;
  /** Exit code of a CLI command that ends with this code. */
  exit: ExitCode;
}

export const ERROR_CODES = {
  CUTOVER_ERR_CONFIG: { summary: 'configuration file is invalid', http: 400, exit: EXIT.USAGE },
  CUTOVER_ERR_USAGE: { summary: 'command used wrongly', http: 400, exit: EXIT.USAGE },
  CUTOVER_ERR_CONFLICT: { summary: 'another deployment is in progress', http: 409, exit: EXIT.FAILED },
  CUTOVER_ERR_NOT_FOUND: { summary: 'no such resource', http: 404, exit: EXIT.FAILED },
  CUTOVER_ERR_BAD_REQUEST: { summary: 'request is malformed', http: 400, exit: EXIT.USAGE },
  CUTOVER_ERR_UNAUTHORIZED: { summary: 'missing or wrong admin token', http: 401, exit: EXIT.UNREACHABLE },
  CUTOVER_ERR_RATE_LIMITED: { summary: 'too many failed authentication attempts', http: 429, exit: EXIT.UNREACHABLE },
  CUTOVER_ERR_INVALID_STATE: { summary: 'operation not allowed in the current state', http: 409, exit: EXIT.FAILED },
  CUTOVER_ERR_NO_HEALTHY_INSTANCE: { summary: 'environment has no healthy instance', http: 409, exit: EXIT.FAILED },
  CUTOVER_ERR_RELEASE_PATH: { summary: 'release directory is missing or unreadable', http: 400, exit: EXIT.USAGE },
  // The release's own processes failed, not the daemon: a gateway's statuses, not 500.
  CUTOVER_ERR_PROVISION: { summary: 'could not start the release', http: 502, exit: EXIT.FAILED },
  CUTOVER_ERR_HEALTH_TIMEOUT: { summary: 'release did not become healthy in time', http: 504, exit: EXIT.FAILED },
  CUTOVER_ERR_GATE_FAILED: { summary: 'a pre-switch gate failed', http: 409, exit: EXIT.FAILED },
  CUTOVER_ERR_ANALYSIS_FAILED: { summary: 'post-switch analysis failed', http: 409, exit: EXIT.FAILED },
  CUTOVER_ERR_MIGRATION: { summary: 'database migration refused or failed', http: 409, exit: EXIT.FAILED },
  CUTOVER_ERR_SCHEMA_MISMATCH: { summary: 'the release cannot serve the database schema as it is (it lacks an applied contract migration)', http: 409, exit: EXIT.FAILED },
  CUTOVER_ERR_ABORTED: { summary: 'deployment was aborted', http: 409, exit: EXIT.FAILED },
  CUTOVER_ERR_STATE_WRITE: { summary: 'state could not be written', http: 503, exit: EXIT.FAILED },
  CUTOVER_ERR_STATE_DAMAGED: { summary: 'the state database is damaged, older than recorded, or missing while earlier state exists', http: 503, exit: EXIT.STATE_DAMAGED },
  CUTOVER_ERR_ALREADY_RUNNING: { summary: 'another daemon holds the state directory', http: 409, exit: EXIT.ALREADY_RUNNING },
  CUTOVER_ERR_STARTING: { summary: 'the daemon is still starting', http: 503, exit: EXIT.FAILED },
  // Raised by the client (the CLI could not reach the daemon); the daemon never sends it.
  CUTOVER_ERR_UNREACHABLE: { summary: 'daemon is unreachable', http: 503, exit: EXIT.UNREACHABLE },
  // Fleet mode: a write reached a controller that does not lead (deposed, or no leader yet).
  CUTOVER_ERR_NOT_LEADER: { summary: 'this controller does not lead the fleet', http: 421, exit: EXIT.FAILED },
  CUTOVER_ERR_FLEET_UNAVAILABLE: { summary: 'the fleet store (etcd) is unavailable', http: 503, exit: EXIT.FAILED },
  CUTOVER_ERR_INTERNAL: { summary: 'internal error', http: 500, exit: EXIT.FAILED },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}

export class CutoverError extends Error {
  readonly code: ErrorCode;
  /** Structured facts about the failure (field, file, line, gate values…); safe to show users. */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CutoverError';
    this.code = code;
    this.details = options?.details;
  }
}

export function isCutoverError(err: unknown, code?: ErrorCode): err is CutoverError {
  return err instanceof CutoverError && (code === undefined || err.code === code);
}
