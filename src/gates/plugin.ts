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
import type { GateTarget, MirrorControl } from './types.ts';
import { z } from 'zod';
import { CutoverError } from '../lib/errors.ts';
import { parseDuration } from '../lib/duration.ts';
import { signPreviewValue } from '../router/preview-access.ts';

/** Longest life of a signed preview value: a week. Default: one hour. */
export const MAX_PREVIEW_TTL_MS = 7 * 24 * 3_600_000;
export const DEFAULT_PREVIEW_TTL_MS = 3_600_000;
const previewTokenBody = z.strictObject({ ttl: z.string().optional() });

export const gatesPlugin: PluginFactory = ({ config, controller, router }) => {
  const gates = config.gates;
  const httpGates = gates.filter((g) => g.kind === 'http');
  const record = (ctx: PhaseContext) => (e: GateEvent) => ctx.record({ type: e.type, phase: e.phase, reason: e.reason, durationMs: e.durationMs ?? null, color: ctx.color, version: ctx.release.version, data: e.data });
  // Mirroring is asked of the controller (it writes the route table) and counted by the router.
  const mirror: MirrorControl = {
    start: (spec) => controller.setMirror(spec),
    stop: () => controller.setMirror(null),
    report: (id) => router.mirrorReport(id),
  };
  const target = (ctx: PhaseContext, listener: 'preview' | 'live'): GateTarget => ({
    mirror,
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

  const access = config.router.previewAccess;
  return {
    extras: {
      // POST /api/v1/preview-token {"ttl":"1h"}: a signed value for testers to see the preview on the live listener.
      async routes(rc) {
        if (rc.method !== 'POST' || rc.path !== '/preview-token') return false;
        if (!access?.secret) throw new CutoverError('CUTOVER_ERR_INVALID_STATE', 'router.previewAccess.secret is not configured: signed preview values are off');
        const parsed = previewTokenBody.safeParse(await rc.body());
        const ttlText = parsed.success ? parsed.data.ttl : undefined;
        const ttl = ttlText === undefined ? DEFAULT_PREVIEW_TTL_MS : parseDuration(ttlText);
        if (!parsed.success || ttl === null || ttl <= 0 || ttl > MAX_PREVIEW_TTL_MS) {
          throw new CutoverError('CUTOVER_ERR_BAD_REQUEST', 'ttl: expected a duration up to 7 days, like "1h"', { details: { field: 'ttl' } });
        }
        const expiresAt = Date.now() + ttl;
        controller.record({ type: 'audit', actor: rc.actor, reason: `${rc.actor} from ${rc.source}: signed preview value valid until ${new Date(expiresAt).toISOString()}`, data: { method: rc.method, path: rc.path, source: rc.source, expiresAt } });
        rc.send(200, { header: access.header, cookie: access.cookie, value: signPreviewValue(access.secret, expiresAt), expiresAt, live: controller.status().router.live });
        return true;
      },
    },
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
