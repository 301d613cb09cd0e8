/**
 * `cutover router`: run a data-plane process in the foreground until SIGINT/SIGTERM (then it
 * stops accepting, drains and exits). On one machine `cutover up` starts it; started by hand on
 * the same stateDir it takes over from the running router (an upgrade without a refused
 * connection). In fleet mode (`fleet:` in the config) it takes its tables from etcd.
 */
import os from 'node:os';
import { CutoverError } from '../lib/errors.ts';
import { parseAddress } from '../config/schema.ts';
import { createLogger } from '../telemetry/logger.ts';
import { packageVersion } from '../lib/version.ts';
import { RouterProcess, routerSettings, type RouterSettings } from '../dataplane/router-process.ts';
import { SETTINGS_ENV } from '../dataplane/child-router.ts';
import { EXIT, loadConfig, type Io } from './context.ts';

export async function runRouter(io: Io, configFile: string | undefined, opts: { id?: string; listen?: string; preview?: string }): Promise<number> {
  const logger = createLogger();
  const fromEnv = io.env[SETTINGS_ENV];
  let settings: RouterSettings;
  let fleet: import('../config/schema.ts').LoadedConfig['fleet'] | undefined;
  if (fromEnv) {
    // Started by `cutover up`: exactly the controller's settings.
    settings = JSON.parse(fromEnv) as RouterSettings;
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
  const rp = fleet
    ? await (await import('../fleet/fleet-router.ts')).startFleetRouter(settings, fleet, logger)
    : await RouterProcess.start(settings, logger);
  const a = rp.router.addresses();
  io.stdout.write(`cutover router ${settings.id} is up (pid ${process.pid}): live ${a.live.host}:${a.live.port}, preview ${a.preview ? `${a.preview.host}:${a.preview.port}` : 'off'}, revision ${rp.router.table().revision}\n`);
  await new Promise<void>((resolve) => {
    const stop = (why: string) => { void rp.shutdown(why); };
    const onInt = () => stop('SIGINT');
    const onTerm = () => stop('SIGTERM');
    const onHup = () => rp.reloadTls();
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    process.on('SIGHUP', onHup);
    rp.once('exit', (reason) => {
      logger.info({ reason }, 'router exited');
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      process.off('SIGHUP', onHup);
      resolve();
    });
  });
  // Timers of the health checker and pools are gone; exit now rather than wait for stragglers.
  setTimeout(() => process.exit(0), 100).unref();
  return EXIT.OK;
}
