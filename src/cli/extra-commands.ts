/** Commands added by later modules (drill, report, migrate…), registered on the same program. */
import type { Command } from 'commander';
import type { AdminClient } from '../api/client.ts';
import type { Io } from './context.ts';
import { registerReport } from './report.ts';
import { registerDrill } from './drill.ts';
import { registerMigrate } from './migrate.ts';
import { registerPreviewToken } from './preview-token.ts';

export interface CommandKit {
  io: Io;
  /** Run `fn` with a client of the daemon, closed afterwards whatever happens. */
  withClient: <T>(cmd: Command, fn: (c: AdminClient) => Promise<T>) => Promise<T>;
  json: (v: unknown) => void;
  setExit: (code: number) => void;
  configOf: (cmd: Command) => string | undefined;
}

export function registerExtraCommands(program: Command, kit: CommandKit): void {
  // drill, report and migrate register here.
  registerReport(program, kit);
  registerDrill(program, kit);
  registerMigrate(program, kit);
  registerPreviewToken(program, kit);
}
