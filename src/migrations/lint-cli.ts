/**
 * `cutover lint-migrations FILE…` as a function of files, options and streams, so the CLI
 * and the deployment pipeline share it. Exit codes: 0 no unsuppressed error, 1 at least one,
 * 2 usage error (no files, unreadable file, bad header, SQL that does not parse).
 */
import { format, summarize, type OutputFormat } from './format.ts';
import { lintFilesCollecting, type Engine } from './lint.ts';

export const EXIT_OK = 0;
export const EXIT_FINDINGS = 1;
export const EXIT_USAGE = 2;

export async function runLintMigrations(
  files: string[],
  opts: { format?: OutputFormat; engine?: Engine },
  out: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream },
): Promise<number> {
  if (files.length === 0) {
    out.stderr.write('cutover lint-migrations: no migration files given (usage: cutover lint-migrations FILE…)\n');
    return EXIT_USAGE;
  }
  const { reports, failures } = await lintFilesCollecting(files, opts.engine === undefined ? {} : { engine: opts.engine });
  // Reports for the files that could be read are still printed, so one bad file hides nothing.
  if (reports.length > 0) out.stdout.write(format(reports, opts.format ?? 'human'));
  for (const f of failures) out.stderr.write(`cutover lint-migrations: ${f.error.message}\n`);
  if (failures.length > 0) return EXIT_USAGE;
  return summarize(reports).errors > 0 ? EXIT_FINDINGS : EXIT_OK;
}
