/**
 * `cutover up`: run the daemon in the foreground until SIGINT/SIGTERM. The daemon (router,
 * SQLite, plugins) is loaded here, when `up` runs: client commands never load it.
 */
import { tokenFile } from '../api/token.ts';
import { createConsoleLogger } from '../lib/logger.ts';
import { loadConfig, type Io } from './context.ts';
import { EXIT } from '../lib/errors.ts';

export async function runUp(io: Io, configFile: string | undefined, opts: { keepInstances: boolean }): Promise<number> {
  const config = loadConfig(io, configFile);
  const [{ Daemon }, { defaultPlugins }] = await Promise.all([import('../daemon/daemon.ts'), import('../daemon/plugins.ts')]);
  const logger = await createConsoleLogger(io.env);
  const daemon = await Daemon.start(config, { logger, plugins: defaultPlugins(), env: io.env });
  const s = daemon.controller.status();
  io.stdout.write([
    `cutover ${config.app} is up`,
    `  live     ${daemon.liveUrl()}${s.live ? `  → ${s.live.version} on ${s.live.color}` : '  (nothing live yet: cutover deploy VERSION --path DIR)'}`,
    `  preview  ${daemon.previewUrl() ?? 'off'}`,
    `  admin    ${daemon.adminUrl()}  (token: ${daemon.tokenSource === 'env' ? 'CUTOVER_TOKEN' : tokenFile(config.stateDir)})`,
    ...daemon.warnings.map((w) => `  warning  ${w}`),
    '',
  ].join('\n'));
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      logger.info({ signal: sig, keepInstances: opts.keepInstances }, 'shutting down');
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      void daemon.stop({ stopInstances: !opts.keepInstances }).finally(resolve);
    };
    const onInt = () => stop('SIGINT');
    const onTerm = () => stop('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
  });
  return EXIT.OK;
}
