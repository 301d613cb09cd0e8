/**
 * The `cutover` command line. Parses arguments (commander), maps errors to the contract's exit
 * codes (0 done, 1 failed or rolled back, 2 usage/config, 3 daemon unreachable or unauthorised).
 * Client commands reach the daemon through the admin API only.
 */
import { Command, CommanderError, Option } from 'commander';
import { writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { CutoverError, EXIT } from '../lib/errors.ts';
import { INIT_TEMPLATE } from '../config/init-template.ts';
import { DEFAULT_CONFIG_FILE } from '../config/defaults.ts';
import type { AdminClient } from '../api/client.ts';
import type { Status } from '../plugin-api/status.ts';
import { connect, exitCodeFor, printError, printJsonError, type CommandKit, type Io } from './context.ts';
import { runUp } from './up.ts';
import { runDeploy } from './deploy.ts';
import { printStatus, printHistory, printServices, type ServiceSummary } from './status.ts';
import { watchStatus } from './status-watch.ts';
import { runLintMigrationsCommand } from './lint-migrations.ts';
import { registerDrill } from './drill.ts';
import { registerMigrate } from './migrate.ts';
import { registerReport } from './report.ts';
import { registerPreviewToken } from './preview-token.ts';
import { registerState } from './state.ts';
import type { DeploymentRecord } from '../store/types.ts';
import { packageVersion } from '../lib/version.ts';
import { runRouter } from './router.ts';
import { runAgent } from './agent.ts';

export async function main(argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() }): Promise<number> {
  let exitCode: number = EXIT.OK;
  let command = '';
  guardPipes(io, () => command, () => exitCode);
  const program = new Command('cutover')
    .description('Blue-green deployments for HTTP services: zero-drop switch, gates before, instant rollback after.')
    .version(await packageVersion(), '-V, --version')
    .option('-c, --config <file>', `config file (default: ./${DEFAULT_CONFIG_FILE})`)
    .option('-s, --service <name>', 'the service to act on, with several under services: (default: the only one; or CUTOVER_SERVICE)')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .hook('preAction', (_program, action) => { command = action.name(); });

  const configOf = (cmd: Command): string | undefined => cmd.optsWithGlobals<{ config?: string }>().config;
  const client = (cmd: Command) => connect(io, configOf(cmd), cmd.optsWithGlobals<{ service?: string }>().service);
  /** Run `fn` with a client of the daemon, closed afterwards whatever happens. */
  const withClient = async <T>(cmd: Command, fn: (c: AdminClient) => Promise<T>): Promise<T> => {
    const c = await client(cmd);
    try {
      return await fn(c);
    } finally {
      await c.close();
    }
  };
  const json = (v: unknown) => io.stdout.write(`${JSON.stringify(v, null, 2)}\n`);

  program.command('init')
    .description('write a commented cutover.yaml')
    .option('--force', 'overwrite an existing file')
    .action((opts: { force?: boolean }, cmd: Command) => {
      const file = path.resolve(io.cwd, configOf(cmd) ?? DEFAULT_CONFIG_FILE);
      if (existsSync(file) && !opts.force) throw new CutoverError('CUTOVER_ERR_USAGE', `${file} exists; pass --force to overwrite it`);
      writeFileSync(file, INIT_TEMPLATE);
      io.stdout.write(`wrote ${path.relative(io.cwd, file) || file}; edit environments.process.command, then run \`cutover up\`\n`);
    });

  program.command('up')
    .description('run the daemon (router, controller, admin API) in the foreground')
    .option('--keep-instances', 'on shutdown leave the instances (and the router process) running for the next daemon to adopt')
    .option('--stop-unknown-instances', 'start although instances of this state directory run that the state does not account for, and stop them')
    .option('--embedded-router', 'run the router inside this process instead of as a supervised `cutover router` process')
    .option('--id <name>', 'fleet: name of this controller in the election (default: the host name)')
    .option('--admin <addr>', 'admin API host:port (default: admin.listen); several controllers on one host need one each')
    .action(async (opts: { keepInstances?: boolean; stopUnknownInstances?: boolean; embeddedRouter?: boolean; id?: string; admin?: string }, cmd: Command) => {
      exitCode = await runUp(io, configOf(cmd), { keepInstances: opts.keepInstances === true, stopUnknownInstances: opts.stopUnknownInstances === true, embeddedRouter: opts.embeddedRouter === true, id: opts.id, admin: opts.admin });
    });

  program.command('router')
    .description('run a data-plane process: serves the route tables it is given, keeps serving the last one when the controller is away')
    .option('--id <name>', 'name of this router (default: <app>-router, or the host name in fleet mode)')
    .option('--listen <addr>', 'live listener host:port (default: router.listen)')
    .option('--preview <addr>', 'preview listener host:port, or "off" (default: router.preview)')
    .action(async (opts: { id?: string; listen?: string; preview?: string }, cmd: Command) => {
      exitCode = await runRouter(io, configOf(cmd), opts);
    });

  program.command('agent')
    .description('fleet mode: run this host\'s share of a colour\'s instances for the controller (desired in etcd, reported back)')
    .requiredOption('--id <name>', 'name of this agent, as listed in environments.process.hosts')
    .option('--address <host>', 'host name or IP routers reach this host\'s instances on (default: the host name)')
    .option('--stop-instances', 'on SIGINT/SIGTERM stop the instances (default: leave them running for the next agent to adopt)')
    .action(async (opts: { id?: string; address?: string; stopInstances?: boolean }, cmd: Command) => {
      exitCode = await runAgent(io, configOf(cmd), opts);
    });

  program.command('deploy')
    .description('release VERSION to the idle colour, validate it, switch, watch it')
    .argument('<version>', 'release version, e.g. v2 or a git sha')
    .option('--path <dir>', 'release directory (process provider); default: environments.process.releaseDir with {version} filled in')
    .option('--manual', 'wait for `cutover promote` before switching')
    .option('--no-wait', 'return once the deployment has started')
    .option('--force', 'deploy even though the release lacks a contract migration the database has applied (recorded)')
    .option('--json', 'print the result as JSON')
    .action(async (version: string, opts: { path?: string; manual?: boolean; force?: boolean; wait: boolean; json?: boolean }, cmd: Command) => {
      // No --path: the daemon takes releaseDir from its config, or refuses (never the working directory).
      exitCode = await runDeploy(io, await client(cmd), { version, path: opts.path === undefined ? null : path.resolve(io.cwd, opts.path), manual: opts.manual === true, force: opts.force === true, wait: opts.wait, json: opts.json === true });
    });

  program.command('promote')
    .description('switch traffic to a candidate that waits for promotion (deploy --manual)')
    .option('--force', 'promote even though its gates failed (recorded)')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { force?: boolean; json?: boolean }, cmd: Command) => {
      await withClient(cmd, async (c) => {
        const r = await c.call<{ deployment: DeploymentRecord }>('POST', '/promote', { force: opts.force === true });
        if (opts.json) json(r); else io.stdout.write(`promoted ${r.deployment.version} on ${r.deployment.color}${opts.force ? ' (forced)' : ''}; switching\n`);
      });
    });

  program.command('abort')
    .description('stop the deployment in progress before its switch; traffic is untouched')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      await withClient(cmd, async (c) => {
        const r = await c.call<{ deployment: DeploymentRecord }>('POST', '/abort', {});
        if (opts.json) json(r); else io.stdout.write(`aborted ${r.deployment.version}: candidate on ${r.deployment.color} stopped, traffic untouched\n`);
      });
    });

  program.command('rollback')
    .description('switch traffic back to the standby (instant when it is warm)')
    .option('--force', 'roll back even though the standby lacks a contract migration the database has applied (recorded)')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { json?: boolean; force?: boolean }, cmd: Command) => {
      await withClient(cmd, async (c) => {
        const r = await c.call<{ ms: number; restarted: boolean; live: { color: string; version: string }; ack?: { acknowledged: string[]; missing: string[]; ms?: number } }>('POST', '/rollback', opts.force ? { force: true } : {});
        const missing = r.ack?.missing ?? [];
        // Not done until every router serves it: a router that did not acknowledge is named, exit 1.
        if (missing.length > 0) exitCode = EXIT.FAILED;
        if (opts.json) json(r);
        else {
          const acks = r.ack && (r.ack.acknowledged.length + missing.length > 1 || missing.length > 0)
            ? `; acknowledged by ${r.ack.acknowledged.length}/${r.ack.acknowledged.length + missing.length} router(s)${missing.length ? `, NOT by ${missing.join(', ')} (still on the previous table: see cutover status)` : ''}`
            : '';
          io.stdout.write(`rolled back: ${r.live.version} is live on ${r.live.color} (${r.ms.toFixed(1)}ms${r.restarted ? '; the standby was retired and had to be started first' : ''}${acks})\n`);
        }
      });
    });

  program.command('retire')
    .description('retire the warm standby now (stop it; pending contract migrations it held back run)')
    .option('--reason <text>', 'why (recorded)')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { json?: boolean; reason?: string }, cmd: Command) => {
      await withClient(cmd, async (c) => {
        const r = await c.call<{ retired: { color: string; version: string | null }; status: { migrations?: { pending: string[] } } }>('POST', '/retire', opts.reason ? { reason: opts.reason } : {});
        if (opts.json) { json(r); return; }
        const pending = r.status.migrations?.pending ?? [];
        io.stdout.write(`retired ${r.retired.color} (${r.retired.version ?? 'nothing'}); a rollback now restarts it${r.status.migrations ? `; ${pending.length ? `contract migrations still pending: ${pending.join(', ')}` : 'no contract migration pending'}` : ''}\n`);
      });
    });

  program.command('status')
    .description('live and standby colours, versions, instance health, the current deployment')
    .option('--json', 'print as JSON')
    .option('--watch', 'follow the live state: redraw on every change (Ctrl-C to stop)')
    .action(async (opts: { json?: boolean; watch?: boolean }, cmd: Command) => {
      await withClient(cmd, async (c) => {
        if (opts.watch) { await watchStatus(io, c, { json: opts.json === true }); return; }
        // Several services and none named: one line each (status -s NAME gives the full view).
        if (cmd.optsWithGlobals<{ service?: string }>().service === undefined && !io.env.CUTOVER_SERVICE) {
          const { services } = await c.call<{ services: ServiceSummary[] }>('GET', '/services').catch(() => ({ services: [] as ServiceSummary[] }));
          if (services.length > 1) {
            if (opts.json) json({ services }); else printServices(io, services);
            return;
          }
        }
        const s = await c.call<Status>('GET', '/status');
        if (opts.json) json(s); else printStatus(io, s);
      });
    });

  program.command('history')
    .description('past deployments, newest first')
    .option('--json', 'print as JSON')
    .addOption(new Option('--limit <n>', 'how many').default('20').argParser((v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 1000) throw new CutoverError('CUTOVER_ERR_USAGE', `--limit: expected an integer from 1 to 1000, got ${v}`);
      return String(n);
    }))
    .action(async (opts: { json?: boolean; limit: string }, cmd: Command) => {
      await withClient(cmd, async (c) => {
        const h = await c.call<{ deployments: DeploymentRecord[] }>('GET', `/history?limit=${opts.limit}`);
        if (opts.json) json(h); else printHistory(io, h.deployments);
      });
    });

  program.command('lint-migrations')
    .description('check SQL migrations for changes that break the running version or block traffic')
    .argument('<files...>', 'migration files (*.expand.sql, *.contract.sql)')
    .addOption(new Option('--format <format>', 'output format').choices(['human', 'json', 'github']).default('human'))
    .addOption(new Option('--engine <engine>', 'SQL dialect (default: from the file header, else postgres)').choices(['postgres', 'mysql']))
    .action(async (files: string[], opts: { format: 'human' | 'json' | 'github'; engine?: 'postgres' | 'mysql' }) => {
      exitCode = await runLintMigrationsCommand(io, files, opts);
    });

  const kit: CommandKit = { io, withClient, json, setExit: (c) => { exitCode = c; }, configOf };
  registerReport(program, kit);
  registerDrill(program, kit);
  registerMigrate(program, kit);
  registerPreviewToken(program, kit);
  registerState(program, kit);

  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT.OK;
      return EXIT.USAGE;
    }
    // --json: scripts parse stdout, so the error comes as JSON there too (the API's error shape).
    if (argv.includes('--json') && command !== 'up') printJsonError(io, err);
    else printError(io, err);
    return exitCodeFor(err);
  }
}

/**
 * `cutover status | head -1`: the reader left, which is not an error of ours. A client command
 * ends quietly with its exit code; the daemon (`up`) drops its output and keeps serving.
 */
function guardPipes(io: Io, command: () => string, exitCode: () => number): void {
  for (const stream of [io.stdout, io.stderr]) {
    if (stream !== process.stdout && stream !== process.stderr) continue;
    if (stream.listenerCount('error') > 0) continue; // guarded already (main called twice in one process)
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      if (command() === 'up') return;
      process.exit(exitCode());
    });
  }
}
