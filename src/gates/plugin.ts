/**
 * Plugs the gates into `cutover up`: the `gates` hook (parity report, warm-up, every gate against
 * the preview listener) and the `verify` hook (the `http` gates once more against the live
 * listener right after the switch). Verdicts only: the controller stops the candidate or rolls
 * back when a verdict is `failed`.
 */
import type { PluginFactory } from '../plugin-api/plugin.ts';
import type { PhaseContext, PhaseVerdict } from '../plugin-api/hooks.ts';
import type { ControllerView } from '../plugin-api/controller-view.ts';
import type { Color } from '../environments/types.ts';
import { runGates, type GateEvent } from './runner.ts';
import { inheritedEnv } from '../lib/child-env.ts';
import { configSecrets } from '../config/secrets.ts';
import { parityReport, type ColorSettings } from './parity.ts';
import type { GateTarget } from './types.ts';

export const gatesPlugin: PluginFactory = ({ config, controller }) => {
  const gates = config.gates;
  const httpGates = gates.filter((g) => g.kind === 'http');
  const record = (ctx: PhaseContext) => (e: GateEvent) => ctx.record({ type: e.type, phase: e.phase, reason: e.reason, durationMs: e.durationMs ?? null, color: ctx.color, version: ctx.release.version, data: e.data });
  const target = (ctx: PhaseContext, listener: 'preview' | 'live'): GateTarget => ({
    url: listener === 'preview' ? ctx.previewUrl ?? '' : ctx.liveUrl,
    listener,
    liveUrl: ctx.previous ? ctx.liveUrl : null,
    hasLive: ctx.previous !== null,
    version: ctx.release.version,
    color: ctx.color,
    cwd: ctx.release.path ?? config.baseDir,
    signal: ctx.signal,
  });
  // A smoke suite gets the URLs it needs and the same allow-list of the daemon's environment as the
  // instances (src/lib/child-env.ts) — never the admin token or another Cutover secret.
  const commandEnv = inheritedEnv(process.env, { inherit: config.environments.process?.inheritEnv, secrets: configSecrets(config) });

  return {
    hooks: {
      async gates(ctx): Promise<PhaseVerdict> {
        if (ctx.previous) recordParity(ctx, controller);
        if (gates.length === 0 && !config.warmup) return { outcome: 'skipped', summary: 'no gates configured' };
        if (ctx.previewUrl === null) {
          return { outcome: 'failed', summary: 'gates need the preview listener (router.preview) and it is not configured' };
        }
        return runGates({ gates, warmup: config.warmup, target: target(ctx, 'preview'), phase: 'gates', record: record(ctx), commandEnv });
      },
      async verify(ctx): Promise<PhaseVerdict> {
        if (httpGates.length === 0) return { outcome: 'skipped', summary: 'no http gates to repeat on the live listener' };
        const v = await runGates({ gates: httpGates, target: target(ctx, 'live'), phase: 'verify', record: record(ctx) });
        if (v.outcome === 'failed' && ctx.deployment.forced) {
          // The operator promoted past failed gates on purpose; the same gate failing on live is
          // what they overrode, so it is recorded, not acted on (analysis still judges the release).
          return { outcome: 'passed', summary: `post-switch smoke on the live listener: ${v.summary} (not rolled back: the promotion was forced)`, data: { ...v.data, forced: true } };
        }
        return { ...v, summary: `post-switch smoke on the live listener: ${v.summary}` };
      },
    },
  };
};

/** The parity report as an event: `outcome: warning` with the drift, never a failure. */
function recordParity(ctx: PhaseContext, controller: ControllerView): void {
  const prev = ctx.previous!;
  const envs = controller.status().environments;
  const settings = (c: Color): ColorSettings => {
    const e = envs[c];
    return { color: c, version: e.version, path: e.path, instances: e.instances.length, healthy: e.healthy, pids: e.instances.map((i) => i.pid) };
  };
  const r = parityReport(settings(ctx.color), settings(prev.color));
  const who = `${ctx.color} (${ctx.release.version}) vs live ${prev.color} (${prev.version})`;
  ctx.record({
    type: 'parity', phase: 'gates', color: ctx.color, version: ctx.release.version,
    reason: r.drift.length === 0 ? `parity: no drift between ${who}` : `parity warning, ${who}: ${r.drift.join('; ')}`,
    data: { outcome: r.drift.length === 0 ? 'passed' : 'warning', drift: r.drift, candidate: r.candidate, live: r.live },
  });
}
