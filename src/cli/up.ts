/**
 * `cutover up`: run the daemon in the foreground until SIGINT/SIGTERM. The daemon (router,
 * SQLite, plugins) is loaded here, when `up` runs: client commands never load it. A start that
 * fails exits non-zero with the reason (Daemon.start undoes what it began and leaves instances
 * running for the next start); exit codes in lib/errors.ts (EXIT).
 */
import { tokenFile } from '../api/token.ts';
import { createConsoleLogger } from '../lib/logger.ts';
import { exitCodeFor, loadConfig, type Io } from './context.ts';
import { CutoverError, EXIT } from '../lib/errors.ts';
import { parseAddress } from '../config/schema.ts';

/** After a failed start, the process ends within this long even if something still holds the event loop: 2 seconds. */
const FAILED_START_EXIT_MS = 2_000;

export async function runUp(io: Io, configFile: string | undefined, opts: { keepInstances: boolean; stopUnknownInstances?: boolean; embeddedRouter?: boolean; id?: string; admin?: string }): Promise<number> {
  let config = loadConfig(io, configFile);
  if (opts.admin !== undefined) {
    const listen = parseAddress(opts.admin);
    if (!listen) throw new CutoverError('CUTOVER_ERR_USAGE', `--admin: expected host:port like 127.0.0.1:7070, got ${JSON.stringify(opts.admin)}`);
    config = { ...config, admin: { ...config.admin, listen } };
  }
  if (opts.id !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(opts.id)) {
    throw new CutoverError('CUTOVER_ERR_USAGE', `--id: expected letters, digits and . _ - (at most 63), got ${JSON.stringify(opts.id)}`);
  }
  if (opts.id !== undefined && !config.fleet) throw new CutoverError('CUTOVER_ERR_USAGE', '--id names a controller of a fleet: the config has no fleet: section');
  const [{ Daemon }, { defaultPlugins }] = await Promise.all([import('../daemon/daemon.ts'), import('../daemon/plugins.ts')]);
  const logger = await createConsoleLogger(io.env);
  // Listening from before the start: a SIGTERM while the daemon starts (its router process already
  // running) is kept and acted on once it is up, instead of killing it half-way with its router left.
  let onSignal = (sig: string): void => { pending = sig; };
  let pending: string | null = null;
  const onInt = () => onSignal('SIGINT');
  const onTerm = () => onSignal('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  let daemon: Awaited<ReturnType<typeof Daemon.start>>;
  try {
    daemon = await Daemon.start(config, {
      logger, plugins: defaultPlugins(), env: io.env, stopUnknownInstances: opts.stopUnknownInstances === true, dataPlane: opts.embeddedRouter ? 'embedded' : 'process',
      controllerId: opts.id,
      // Fleet: a controller that lost the lead exits (a supervisor starts it again as a follower), like kube-controller-manager.
      onDeposed: (why) => {
        logger.error({ reason: why }, 'this controller lost the lead of the fleet and wrote nothing after that; exiting so that it starts again as a follower');
        setTimeout(() => process.exit(EXIT.FAILED), 50).unref();
      },
    });
  } catch (err) {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
    // One line for the log (the whole explanation goes to stderr below).
    logger.error({ code: (err as { code?: string }).code, reason: (err as Error).message.split('\n')[0] }, 'start-up failed; nothing is left running but the instances, for the next start to adopt');
    // A supervisor must see the exit: whatever a plugin left behind cannot keep a half-started process up.
    setTimeout(() => process.exit(exitCodeFor(err)), FAILED_START_EXIT_MS).unref();
    throw err;
  }
  const s = daemon.controller.status();
  const multi = daemon.services.length > 1 || (config.services?.length ?? 0) > 0;
  const liveOf = (st: typeof s) => (st.live ? `${st.live.version} on ${st.live.color}` : 'nothing live yet');
  io.stdout.write([
    multi ? `cutover is up with ${daemon.services.length} service(s)` : `cutover ${config.app} is up`,
    multi
      ? `  live     ${daemon.liveUrl()}`
      : `  live     ${daemon.liveUrl()}${s.live ? `  → ${s.live.version} on ${s.live.color}` : '  (nothing live yet: cutover deploy VERSION --path DIR)'}`,
    ...(daemon.tlsUrl() ? [`  tls      ${daemon.tlsUrl()}  (HTTP/2 and HTTP/1.1)`] : []),
    `  preview  ${daemon.previewUrl() ?? 'off'}`,
    `  router   ${daemon.fleet ? `fleet: ${daemon.fleet.routers().length} router(s) registered in etcd (${config.fleet?.etcd.endpoints.join(', ')})` : daemon.childRouter ? `process ${daemon.childRouter.routers()[0]?.pid ?? '?'} (survives this one; logs: ${config.stateDir}/logs/router.log)` : 'in this process'}`,
    ...(multi ? daemon.services.map((x) => `  service  ${x.name}: ${x.plan.hosts.join(', ')}  → ${liveOf(x.controller.status())}  (cutover deploy VERSION -s ${x.name} --path DIR)`) : []),
    ...(daemon.leadership ? [`  leader   ${daemon.leadership.isLeader() ? `this controller (${daemon.leadership.id})` : `${daemon.leadership.leader()?.id ?? 'none yet'} (this controller ${daemon.leadership.id} follows and forwards writes)`}`] : []),
    `  admin    ${daemon.adminUrl()}  (token: ${daemon.tokenSource === 'env' ? 'CUTOVER_TOKEN' : tokenFile(config.stateDir)})`,
    ...daemon.warnings.map((w) => `  warning  ${w}`),
    '',
  ].join('\n'));
  await new Promise<void>((resolve) => {
    let stopping = false;
    onSignal = (sig: string) => {
      // A second signal while stopping changes nothing: the drain in progress finishes.
      if (stopping) {
        // Ctrl-C twice: leave now (the router process is its own and keeps serving); SIGTERM again: keep draining.
        if (sig === 'SIGINT') { logger.warn('second SIGINT: exiting without waiting for the shutdown'); process.exit(130); }
        logger.info({ signal: sig }, 'already shutting down');
        return;
      }
      stopping = true;
      logger.info({ signal: sig, keepInstances: opts.keepInstances }, 'shutting down');
      void daemon.stop({ stopInstances: !opts.keepInstances })
        .catch((err: unknown) => logger.error({ err: (err as Error).message }, 'shutdown step failed'))
        .finally(() => { process.off('SIGINT', onInt); process.off('SIGTERM', onTerm); resolve(); });
    };
    if (pending !== null) onSignal(pending);
  });
  return EXIT.OK;
}
