/**
 * Migrations as a daemon plugin: when cutover.yaml has a `database:` section, the `migrate` and
 * `retired` pipeline seams run the Migrator, `status()` gains `migrations: { pending }`, and the
 * admin API gains `GET /api/v1/migrations` and `POST /api/v1/migrations/contract` (bearer token,
 * audited like every mutating call). Without a `database:` section it adds nothing.
 */
import type { PluginFactory, RequestContext } from '../plugin-api/plugin.ts';
import { COLORS } from '../environments/types.ts';
import type { EnvView } from './migrator.ts';

export const migrationsPlugin: PluginFactory = async ({ config, controller, logger }) => {
  if (!config.database) return {};
  // Loaded only with a database section: SQL parsers (WebAssembly) and drivers cost ~20 MB.
  const { Migrator } = await import('./migrator.ts');
  const environments = (): EnvView[] => {
    const envs = controller.status().environments;
    return COLORS.map((c) => ({ color: c, role: envs[c].role, version: envs[c].version, path: envs[c].path }));
  };
  const migrator = new Migrator({ config, environments, record: (e) => controller.record(e), logger });
  controller.extendStatus('migrations', () => migrator.statusSection());
  const loaded = migrator.refresh();

  const routes = async (ctx: RequestContext): Promise<boolean> => {
    if (ctx.method === 'GET' && ctx.path === '/migrations') {
      ctx.send(200, await migrator.pendingContracts());
      return true;
    }
    if (ctx.method === 'POST' && ctx.path === '/migrations/contract') {
      controller.record({ type: 'audit', actor: ctx.actor, reason: `${ctx.actor} from ${ctx.source}: migrate contract`, data: { method: ctx.method, path: ctx.path, source: ctx.source } });
      ctx.send(200, await migrator.applyContract(ctx.actor, `requested by ${ctx.actor}`));
      return true;
    }
    return false;
  };

  return {
    hooks: {
      migrate: (ctx) => migrator.migrate(ctx),
      retired: (info) => migrator.onRetired(info),
    },
    extras: { routes },
    close: async () => { await loaded; },
  };
};
