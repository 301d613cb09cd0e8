/**
 * `cutover router`: run a data-plane process in the foreground until SIGINT/SIGTERM (then it
 * stops accepting, drains and exits). On one machine `cutover up` starts it; started by hand on
 * the same stateDir it takes over from the running router (an upgrade without a refused
 * connection). In fleet mode (`fleet:` in the config) it takes its tables from etcd.
 * The router and etcd modules are loaded when the command runs: other commands never load them.
 */
import os from 'node:os';
import { CutoverError, EXIT } from '../lib/errors.ts';
import { parseAddress } from '../config/schema.ts';
import { createConsoleLogger } from '../lib/logger.ts';
import { packageVersion } from '../lib/version.ts';
import { loadConfig, type Io } from './context.ts';
import { readToken } from '../api/token.ts';
import { connectableHost, hostPort } from '../lib/address.ts';

export async function runRouter(io: Io, configFile: string | undefined, opts: { id?: string; listen?: string; preview?: string }): Promise<number> {
  const { RouterProcess, routerSettings, SETTINGS_ENV } = await import('../router/router-process.ts');
  const logger = await createConsoleLogger(io.env);
  const fromEnv = io.env[SETTINGS_ENV];
  let settings: import('../router/router-process.ts').RouterSettings;
  let fleet: import('../config/schema.ts').LoadedConfig['fleet'] | undefined;
  if (fromEnv) {
    // Started by `cutover up`: exactly the controller's settings.
    settings = JSON.parse(fromEnv) as typeof settings;
  } else {
    const config = loadConfig(io, configFile);
    const addr = (flag: string, v: string | undefined) => {
      if (v === undefined) return undefined;
      const a = parseAddress(v);
      if (!a) throw new CutoverError('CUTOVER_ERR_USAGE', `${flag}: expected host:port like 127.0.0.1:8080, got ${JSON.stringify(v)}`);
      return a;
    };
    fleet = config.fleet;
    settings = routerSettings(config, {
      id: opts.id ?? (config.fleet ? os.hostname() : undefined),
      version: await packageVersion(),
      listen: addr('--listen', opts.listen),
      preview: opts.preview === 'off' ? null : addr('--preview', opts.preview),
    });
  }
  let push: { adminUrl: string; token: string } | null = null;
  if (fleet && !fromEnv) {
    // Request records go to the controller's admin API: CUTOVER_ADMIN_URL, else admin.listen of the shared config.
    const config = loadConfig(io, configFile);
    const adminUrl = io.env.CUTOVER_ADMIN_URL?.trim() || `${config.admin.tls ? 'https' : 'http'}://${hostPort({ host: connectableHost(config.admin.listen.host), port: config.admin.listen.port })}`;
    try { push = { adminUrl, token: readToken(config.stateDir, io.env) }; } catch { push = null; }
  }
  const rp = fleet
    ? await (await import('../fleet/fleet-router.ts')).startFleetRouter(settings, fleet, logger, push)
    : await RouterProcess.start(settings, logger);
  const a = rp.router.addresses();
  io.stdout.write(`cutover router ${settings.id} is up (pid ${process.pid}): live ${a.live.host}:${a.live.port}, preview ${a.preview ? `${a.preview.host}:${a.preview.port}` : 'off'}, revision ${rp.router.table().revision}${fleet ? `, fleet ${fleet.etcd.endpoints.join(',')}` : ''}\n`);
  await new Promise<void>((resolve) => {
    const stop = (why: string) => { void rp.shutdown(why); };
    const onInt = () => stop('SIGINT');
    const onTerm = () => stop('SIGTERM');
    const onHup = () => rp.reloadTls();
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    process.on('SIGHUP', onHup);
    rp.once('exit', (reason: string) => {
      logger.info({ reason }, 'router exited');
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      process.off('SIGHUP', onHup);
      resolve();
    });
  });
  // The pools and checks are closed; exit now rather than wait for straggling timers.
  setTimeout(() => process.exit(0), 100).unref();
  return EXIT.OK;
}
