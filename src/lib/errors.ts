/**
 * One error root for Cutover. Callers branch on `code`, never on message text.
 * The table below is the only place codes are defined; add, never rename.
 */

export const ERROR_CODES = {
  CUTOVER_ERR_CONFIG: 'configuration file is invalid',
  CUTOVER_ERR_USAGE: 'command used wrongly',
  CUTOVER_ERR_CONFLICT: 'another deployment is in progress',
  CUTOVER_ERR_NOT_FOUND: 'no such resource',
  CUTOVER_ERR_BAD_REQUEST: 'request is malformed',
  CUTOVER_ERR_UNAUTHORIZED: 'missing or wrong admin token',
  CUTOVER_ERR_RATE_LIMITED: 'too many failed authentication attempts',
  CUTOVER_ERR_INVALID_STATE: 'operation not allowed in the current state',
  CUTOVER_ERR_NO_HEALTHY_INSTANCE: 'environment has no healthy instance',
  CUTOVER_ERR_RELEASE_PATH: 'release directory is missing or unreadable',
  CUTOVER_ERR_PROVISION: 'could not start the release',
  CUTOVER_ERR_HEALTH_TIMEOUT: 'release did not become healthy in time',
  CUTOVER_ERR_GATE_FAILED: 'a pre-switch gate failed',
  CUTOVER_ERR_ANALYSIS_FAILED: 'post-switch analysis failed',
  CUTOVER_ERR_MIGRATION: 'database migration refused or failed',
  CUTOVER_ERR_ABORTED: 'deployment was aborted',
  CUTOVER_ERR_STATE_WRITE: 'state could not be written',
  CUTOVER_ERR_STATE_DAMAGED: 'the state database is damaged, older than recorded, or missing while earlier state exists',
  CUTOVER_ERR_ALREADY_RUNNING: 'another daemon holds the state directory',
  CUTOVER_ERR_STARTING: 'the daemon is still starting',
  CUTOVER_ERR_UNREACHABLE: 'daemon is unreachable',
  CUTOVER_ERR_INTERNAL: 'internal error',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

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
