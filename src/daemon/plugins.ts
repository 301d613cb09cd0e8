/**
 * The plugins `cutover up` composes into the daemon: each turns a part of cutover.yaml
 * (gates, analysis, database, notifications, metrics, dashboard) into pipeline hooks,
 * request observers and API extras. Order matters only for request observers.
 */
import type { PluginFactory } from '../plugin-api/plugin.ts';
import { gatesPlugin } from '../gates/plugin.ts';
import { analysisPlugin } from '../analysis/plugin.ts';
import { telemetryPlugin } from '../telemetry/plugin.ts';
import { migrationsPlugin } from '../migrations/plugin.ts';

export function defaultPlugins(): PluginFactory[] {
  return [gatesPlugin, analysisPlugin, migrationsPlugin, telemetryPlugin()];
}
