/**
 * Structured JSON logs (pino), one event per line. Fields by convention:
 * `color`, `version`, `deployment`, `instance`. Never log tokens, secrets or request bodies.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(opts: { level?: string; destination?: NodeJS.WritableStream | number } = {}): Logger {
  const level = opts.level ?? process.env.CUTOVER_LOG_LEVEL ?? 'info';
  const dest = opts.destination ?? 2; // stderr: stdout stays for command output
  return pino(
    {
      level,
      base: { app: 'cutover' },
      redact: { paths: ['token', '*.token', 'authorization', '*.authorization', 'headers.authorization', 'secret', '*.secret', 'password', '*.password'], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    typeof dest === 'number' ? pino.destination({ fd: dest, sync: false }) : dest,
  );
}

/** A logger that drops everything; for tests and library use. */
export const silentLogger: Logger = pino({ level: 'silent' });
