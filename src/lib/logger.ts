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

/**
 * The daemon's console logger: JSON lines, except on a terminal (stderr a TTY), where each event is
 * one readable line (pino-pretty, loaded only then) so that the start banner and the log read as
 * one text. CUTOVER_LOG_FORMAT=json|pretty overrides the choice.
 */
export async function createConsoleLogger(env: NodeJS.ProcessEnv = process.env, stderr: { isTTY?: boolean } = process.stderr): Promise<Logger> {
  const format = env.CUTOVER_LOG_FORMAT ?? (stderr.isTTY ? 'pretty' : 'json');
  if (format !== 'pretty') return createLogger({ level: env.CUTOVER_LOG_LEVEL });
  const { default: pretty } = await import('pino-pretty');
  // sync: a line is on the terminal before the next stdout write (the banner comes after the start-up lines).
  const stream = pretty({ destination: 2, sync: true, colorize: stderr.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,app' });
  return createLogger({ level: env.CUTOVER_LOG_LEVEL, destination: stream });
}

/** A logger that drops everything; for tests and library use. */
export const silentLogger: Logger = pino({ level: 'silent' });
