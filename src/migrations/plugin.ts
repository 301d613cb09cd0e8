/**
 * Migrations as a daemon plugin: when cutover.yaml has a `database:` section, the `migrate` and
 * `retired` pipeline seams run the Migrator, deploys and rollbacks are checked against the schema
 * (`schemaProblems`), the router copies a redacted sample of live traffic for the compatibility
 * run, the standby is watched after each migration, `status()` gains `migrations: { pending,
 * rollbackTarget }`, and the admin API gains `GET /api/v1/migrations` and `POST
 * /api/v1/migrations/contract` (bearer token, audited like every mutating call). Without a
 * `database:` section it adds nothing.
 */
import type { PluginFactory, RequestContext } from '../plugin-api/plugin.ts';
import { COLORS, type Color } from '../environments/types.ts';
import type { EnvView } from './migrator.ts';
import type { StandbyCheck } from './standby-watch.ts';

export interface RollbackTargetView {
  color: Color;
  version: string | null;
  state: 'warm' | 'retired';
  /** False when the database has moved past it (a contract it lacks) or the last watch failed. */
  canServe: boolean;
  problems: string[];
  /** The last replay of read-only traffic against it after a migration (warm standby only). */
  lastCheck: StandbyCheck | null;
}

export const migrationsPlugin: PluginFactory = async ({ config, controller, router, logger }) => {
  if (!config.database) return {};
  const db = config.database;
  // Loaded only with a database section: SQL parsers (WebAssembly) and drivers cost ~20 MB.
  const { Migrator } = await import('./migrator.ts');
  const { TrafficSample } = await import('./traffic-sample.ts');
  const { watchStandby } = await import('./standby-watch.ts');
  const sampleCfg = db.compatibility.sample;
  const sample = sampleCfg.enabled ? new TrafficSample(sampleCfg, { stateDir: config.stateDir, logger }) : null;
  // A data plane that cannot copy requests (no setCapture) leaves the sample empty: only the named checks run.
  if (sample) router.setCapture?.(sample.capture());

  const environments = (): EnvView[] => {
    const envs = controller.environments();
    return COLORS.map((c) => ({ color: c, role: envs[c].role, version: envs[c].version, path: envs[c].path }));
  };
  let lastCheck: StandbyCheck | null = null;
  /** Expand files applied by a deployment: the standby is watched once that deployment is stable. */
  const expandOf = new Map<string, string[]>();
  const watches = new Set<Promise<void>>();
  const closing = new AbortController();

  const watch = (after: string): void => {
    const envs = controller.environments();
    const color = COLORS.find((c) => envs[c].role === 'standby');
    if (!color || envs[color].version === null || !sample) return;
    const addrs = router.addresses();
    const p = watchStandby({
      previewUrl: addrs.preview ? `http://${addrs.preview.host.includes(':') ? `[${addrs.preview.host}]` : addrs.preview.host}:${addrs.preview.port}` : null,
      table: () => router.table(), standby: { color, version: envs[color].version as string }, sample: sample.readOnly(), after,
      timeoutMs: db.compatibility.requestTimeout, headers: sampleCfg.headers, signal: closing.signal,
    }).then((check) => {
      if (check.outcome === 'skipped' && lastCheck?.color === check.color && lastCheck.version === check.version) return;
      lastCheck = check;
      controller.record({ type: check.outcome === 'failed' ? 'migrations.standby.broken' : 'migrations.standby.checked', actor: 'cutover', color: check.color, version: check.version, reason: check.reason, data: { ...check } });
    }, (err: unknown) => {
      if (!closing.signal.aborted) logger.warn({ err }, 'watching the standby failed');
    }).finally(() => { watches.delete(p); });
    watches.add(p);
  };

  const migrator = new Migrator({
    config, environments, record: (e) => controller.record(e), logger,
    sample: () => sample?.all() ?? [],
    onMigrated: (m) => {
      if (m.phase === 'expand' && m.deployment) {
        expandOf.set(m.deployment, m.files);
        if (expandOf.size > 10) expandOf.delete(expandOf.keys().next().value as string);
      } else {
        watch(`contract migration(s) ${m.files.join(', ')}`);
      }
    },
  });
  controller.on('deployment', (d) => {
    const files = expandOf.get(d.id);
    if (!files || d.finishedAt === null) return;
    expandOf.delete(d.id);
    // Succeeded: the old release is the standby now, on the preview listener. Rolled back: the
    // new one is, and it carries the migrations; either way the rollback target is checked.
    if (d.status === 'succeeded' || d.status === 'rolled-back') watch(`expand migration(s) ${files.join(', ')} of ${d.version}`);
  });

  const rollbackTarget = (): RollbackTargetView | null => {
    const envs = controller.environments();
    const live = COLORS.find((c) => envs[c].role === 'live');
    if (!live) return null;
    const other = envs[live === 'blue' ? 'green' : 'blue'];
    if (other.version === null || (other.role !== 'standby' && other.role !== 'retired')) return null;
    const problems = migrator.schemaProblems({ version: other.version, path: other.path });
    const check = lastCheck !== null && lastCheck.color === other.color && lastCheck.version === other.version && other.role === 'standby' ? lastCheck : null;
    if (check?.outcome === 'failed') problems.push(check.reason);
    return { color: other.color, version: other.version, state: other.role === 'standby' ? 'warm' : 'retired', canServe: problems.length === 0, problems, lastCheck: check };
  };
  controller.extendStatus('migrations', () => ({ ...migrator.statusSection(), rollbackTarget: rollbackTarget(), sampledRequests: sample?.size ?? 0 }));
  const loaded = migrator.refresh();

  const routes = async (ctx: RequestContext): Promise<boolean> => {
    if (ctx.method === 'GET' && ctx.path === '/migrations') {
      ctx.send(200, { ...(await migrator.pendingContracts()), rollbackTarget: rollbackTarget() });
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
      schemaProblems: (release) => migrator.schemaProblems(release),
    },
    onRequest: sample ? (r) => sample.observe(r) : undefined,
    extras: { routes },
    close: async () => {
      closing.abort();
      router.setCapture?.(null);
      await Promise.allSettled([...watches]);
      sample?.flush();
      await loaded;
    },
  };
};
