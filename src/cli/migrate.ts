/**
 * `cutover migrate status` and `cutover migrate contract`: what the shared database has applied
 * and holds, and running held contract migrations once no release without them can take traffic.
 * Talks to the daemon (GET /api/v1/migrations, POST /api/v1/migrations/contract) only.
 */
import type { Command } from 'commander';
import type { ContractOutcome, PendingContract } from '../migrations/migrator.ts';
import type { TrackedMigration } from '../migrations/tracking.ts';
import { formatDuration } from '../lib/duration.ts';
import type { CommandKit } from './context.ts';
import { EXIT } from '../lib/errors.ts';
import { ago, table } from './format.ts';

export function registerMigrate(program: Command, kit: CommandKit): void {
  const migrate = program.command('migrate').description('database migrations: what is applied, what is held, run held contract migrations');

  migrate.command('status')
    .description('applied migrations and held contract migrations (with what holds them)')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      await kit.withClient(cmd, async (c) => {
        const r = await c.call<{ pending: PendingContract[]; applied: TrackedMigration[] }>('GET', '/migrations');
        if (opts.json) { kit.json(r); return; }
        const rows = [['NAME', 'PHASE', 'RELEASE', 'APPLIED', 'BY']];
        for (const m of r.applied) rows.push([m.name, m.phase, m.release, m.appliedAt ? ago(m.appliedAt) : '-', m.actor ?? '-']);
        kit.io.stdout.write(r.applied.length ? table(rows) : 'no migrations applied yet\n');
        if (r.pending.length === 0) { kit.io.stdout.write('no contract migration is held\n'); return; }
        kit.io.stdout.write(`\nheld contract migrations:\n${r.pending.map(pendingLine).join('\n')}\n`);
      });
    });

  migrate.command('contract')
    .description('apply held contract migrations; refused while an environment that can take traffic runs a release without them')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      await kit.withClient(cmd, async (c) => {
        const r = await c.call<ContractOutcome>('POST', '/migrations/contract', {});
        if (opts.json) kit.json(r);
        else {
          if (r.applied.length === 0) kit.io.stdout.write('no contract migration is held\n');
          for (const a of r.applied) kit.io.stdout.write(`  ✓ ${a.name} (${a.statements} statement(s), ${formatDuration(a.durationMs)})\n`);
          if (r.held.length > 0) kit.io.stdout.write(`still held:\n${r.held.map(pendingLine).join('\n')}\n`);
        }
        kit.setExit(r.held.length === 0 ? EXIT.OK : EXIT.FAILED);
      });
    });
}

function pendingLine(p: PendingContract): string {
  return `  ${p.blockedBy.length ? '✗' : '•'} ${p.name} (from ${p.release}, held ${ago(p.recordedAt)})${p.blockedBy.length ? `: ${p.blockedBy.join('; ')}` : ': may run now (`cutover migrate contract`)'}`;
}
