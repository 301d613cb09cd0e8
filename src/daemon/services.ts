/**
 * The services one daemon runs: with `services:` in the config each service gets its own store
 * (`<stateDir>/services/<name>/state.db`), environment provider, health checker, controller and
 * plugins, behind the one shared router; without it, one service from the top-level keys,
 * exactly as before (its state stays in `<stateDir>`).
 *
 * Owns: building one service's parts. Must never: share a store, provider, health checker or
 * controller between services (a switch of one must never touch another).
 */
import type { LoadedConfig } from '../config/schema.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { ProcessProvider } from '../environments/process-provider.ts';
import { StaticProvider } from '../environments/static-provider.ts';
import { AgentProvider } from '../fleet/agent-provider.ts';
import type { EnvironmentProvider } from '../environments/types.ts';
import { HealthChecker } from '../health/health-checker.ts';
import type { Logger } from '../lib/logger.ts';
import type { TxnFence } from '../fleet/agent-provider.ts';

/** One service's configuration as the daemon uses it. */
export interface ServicePlan {
  name: string;
  config: LoadedConfig;
  hosts: readonly string[];
  paths: readonly string[] | null;
  tls: { cert: string; key: string } | null;
}

/** The services of a config: its `services:`, or one named after `app` from the top-level keys. */
export function servicePlans(config: LoadedConfig): { multi: boolean; plans: ServicePlan[] } {
  if (!config.services || config.services.length === 0) {
    return { multi: false, plans: [{ name: config.app, config, hosts: [], paths: null, tls: null }] };
  }
  return { multi: true, plans: config.services.map((s) => ({ name: s.name, config: s.config, hosts: s.hosts, paths: s.paths, tls: s.tls })) };
}

export interface ServiceParts {
  store: SqliteStore;
  health: HealthChecker;
  provider: EnvironmentProvider;
}

/** `secrets`: values kept out of instance environments' logs (the admin token, configured secrets). */
/** `fence`: in a fleet of controllers, the leader's compare added to every desired-instance write (agent hosts). */
export function buildServiceParts(plan: ServicePlan, logger: Logger, secrets: readonly string[], fence?: TxnFence): ServiceParts {
  const config = plan.config;
  const store = new SqliteStore(config.stateDir);
  const health = new HealthChecker({
    path: config.health.path, intervalMs: config.health.interval, timeoutMs: config.health.timeout,
    healthyThreshold: config.health.healthyThreshold, unhealthyThreshold: config.health.unhealthyThreshold, logger,
  });
  return { store, health, provider: makeProvider(config, logger, secrets, fence) };
}

export function makeProvider(config: LoadedConfig, logger: Logger, secrets: readonly string[], fence?: TxnFence): EnvironmentProvider {
  const env = config.environments;
  if (env.provider === 'static' && env.static) {
    return new StaticProvider({ blue: env.static.blue, green: env.static.green, logger });
  }
  const p = env.process;
  if (!p) throw new Error('unreachable: the config schema requires environments.process');
  if (p.hosts !== undefined && config.fleet) {
    // Instances on `cutover agent` hosts (docs/fleet.md); the schema refuses hosts without fleet:.
    return new AgentProvider({ app: config.app, fleet: config.fleet, hosts: p.hosts, instances: p.instances, startTimeoutMs: p.startTimeout, stopTimeoutMs: p.stopTimeout, releaseDir: p.releaseDir, logger, fence });
  }
  return new ProcessProvider({ stateDir: config.stateDir, command: p.command, instances: p.instances, env: p.env, inheritEnv: p.inheritEnv, secrets: [...secrets], stopGraceMs: p.stopTimeout, releaseDir: p.releaseDir, logger });
}

/**
 * One Prometheus exposition from several services' registries (each labels its series with
 * `service`): a metric family's HELP and TYPE once, then every service's samples.
 */
export function mergeExpositions(texts: readonly string[]): string {
  const families = new Map<string, { head: string[]; samples: string[] }>();
  for (const text of texts) {
    let current: { head: string[]; samples: string[] } | null = null;
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const m = /^# (HELP|TYPE) (\S+)/.exec(line);
      if (m) {
        let f = families.get(m[2]);
        if (f === undefined) { f = { head: [], samples: [] }; families.set(m[2], f); }
        if (!f.head.some((h) => h.startsWith(`# ${m[1]} `))) f.head.push(line);
        current = f;
        continue;
      }
      current?.samples.push(line);
    }
  }
  return [...families.values()].map((f) => [...f.head, ...f.samples].join('\n')).join('\n\n') + '\n';
}
