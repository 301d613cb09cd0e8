/** `cutover lint-migrations FILE…`: loads the SQL parsers only when this command runs. */
import type { Io } from './context.ts';

export async function runLintMigrationsCommand(io: Io, files: string[], opts: { format: 'human' | 'json' | 'github'; engine?: 'postgres' | 'mysql' }): Promise<number> {
  const { runLintMigrations } = await import('../migrations/lint-cli.ts');
  return runLintMigrations(files.map((f) => (f.startsWith('/') ? f : `${io.cwd}/${f}`)), opts, { stdout: io.stdout, stderr: io.stderr });
}
