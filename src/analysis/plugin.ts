/**
 * Plugs post-switch analysis into `cutover up` (the `analysis` hook) and adds the rollback drill
 * (`POST /api/v1/drill`). The hook judges and returns a verdict; the controller rolls back.
 */
import { z } from 'zod';
import type { PluginFactory } from '../plugin-api/plugin.ts';
import type { PhaseVerdict } from '../plugin-api/hooks.ts';
import { CutoverError } from '../lib/errors.ts';
import { runAnalysis } from './analyzer.ts';
import { ReleaseRecorder } from './recorder.ts';
import { AuthCounter } from './auth-counter.ts';
import { judgeStep } from './step.ts';
import { DEFAULT_DRILL_CONNECTIONS, DEFAULT_DRILL_HOLD_MS, DEFAULT_DRILL_RATE, runDrill } from './drill.ts';

const drillBody = z.strictObject({
  path: z.string().startsWith('/').optional(),
  rate: z.number().positive().max(10_000).optional(),
  connections: z.int().min(1).max(64).optional(),
  holdMs: z.number().min(0).max(60_000).optional(),
});

export const analysisPlugin: PluginFactory = ({ config, controller, router }) => {
  const cfg = config.analysis;
  /** Recorders of the bakes in progress (at most one pair: one deployment at a time). */
  const recorders = new Set<ReleaseRecorder>();
  /** Auth failures per colour during a bake or a step (one deployment at a time). */
  const auth = new Set<AuthCounter>();
  return {
    onRequest: (r) => {
      for (const rec of recorders) rec.observe(r);
      for (const a of auth) a.observe(r);
    },
    hooks: {
      async step(ctx, step): Promise<PhaseVerdict> {
        const prev = ctx.previous;
        const candidate = new ReleaseRecorder({ listener: 'live', color: ctx.color, version: ctx.release.version });
        const old = prev ? new ReleaseRecorder({ listener: 'live', color: prev.color, version: prev.version }) : null;
        const counter = new AuthCounter();
        // Judged request by request: a sampling data plane (HAProxy engine) reports every one meanwhile.
        const releaseEvery = await router.everyRequest?.();
        recorders.add(candidate);
        if (old) recorders.add(old);
        auth.add(counter);
        try {
          return await judgeStep({
            cfg: cfg ?? null, step, candidate: { color: ctx.color, version: ctx.release.version }, previous: prev,
            candidateWindow: (from, to, latencyFrom) => candidate.take(from, to, latencyFrom),
            previousWindow: old ? (from, to) => old.take(from, to, from) : null,
            auth: () => counter.take(),
            signal: ctx.signal,
            record: (e) => ctx.record({ type: e.type, phase: 'switch', reason: e.reason, data: e.data, color: ctx.color, version: ctx.release.version }),
          });
        } finally {
          recorders.delete(candidate);
          if (old) recorders.delete(old);
          auth.delete(counter);
          releaseEvery?.();
        }
      },
      async analysis(ctx): Promise<PhaseVerdict> {
        if (!cfg) return { outcome: 'skipped', summary: 'no analysis configured' };
        if (!ctx.previous) return { outcome: 'skipped', summary: 'first release: no baseline to judge against and nothing to roll back to' };
        // The switch event of this deployment says when the new colour took live traffic.
        const switched = controller.events({ deployment: ctx.deployment.id, limit: 10_000 }).filter((e) => e.type === 'switch').at(-1);
        const candidate = new ReleaseRecorder({ listener: 'live', color: ctx.color, version: ctx.release.version });
        const copy = new ReleaseRecorder({ listener: 'preview', color: ctx.previous.color, version: ctx.previous.version });
        const releaseEvery = await router.everyRequest?.();
        recorders.add(candidate);
        recorders.add(copy);
        const counter = new AuthCounter();
        auth.add(counter);
        try {
          return await runAnalysis({
          auth: () => counter.take(),
          cfg,
          candidate: { color: ctx.color, version: ctx.release.version },
          previous: { color: ctx.previous.color, version: ctx.previous.version },
          switchAt: switched?.time ?? Date.now(),
          stats: router.stats,
          candidateWindow: (from, to, latencyFrom) => candidate.take(from, to, latencyFrom),
          previousPreviewWindow: (from, to, latencyFrom) => copy.take(from, to, latencyFrom),
          liveUrl: ctx.liveUrl,
          previewUrl: ctx.previewUrl,
          signal: ctx.signal,
          record: (e) => ctx.record({ type: e.type, phase: 'analysis', reason: e.reason, data: e.data, color: ctx.color, version: ctx.release.version }),
          awaitPromotion: (reason) => ctx.awaitPromotion(reason),
          });
        } finally {
          recorders.delete(candidate);
          recorders.delete(copy);
          auth.delete(counter);
          releaseEvery?.();
        }
      },
    },
    extras: {
      async routes(rc) {
        if (rc.method !== 'POST' || rc.path !== '/drill') return false;
        const parsed = drillBody.safeParse(await rc.body());
        if (!parsed.success) {
          const issue = parsed.error.issues[0];
          // Named like every other API refusal: `details.field` is what to fix.
          const field = issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : issue.path.join('.') || '(body)';
          throw new CutoverError('CUTOVER_ERR_BAD_REQUEST', `${field}: ${issue.message}`, { details: { field } });
        }
        const b = parsed.data;
        const report = await runDrill(controller, controller.status().router.live, {
          path: b.path ?? '/', rate: b.rate ?? DEFAULT_DRILL_RATE, connections: b.connections ?? DEFAULT_DRILL_CONNECTIONS,
          holdMs: b.holdMs ?? DEFAULT_DRILL_HOLD_MS, actor: rc.actor,
        });
        controller.record({ type: 'audit', actor: rc.actor, reason: `${rc.actor} from ${rc.source}: drill`, data: { method: rc.method, path: rc.path, source: rc.source, outcome: report.outcome } });
        rc.send(200, report);
        return true;
      },
    },
  };
};
