/**
 * Rollback drill: flip live to the warm standby and back under a small probe load, and report
 * how long each flip took and how many probes failed. Two `rollback()` calls of the controller
 * (the real swap primitive, recorded with durations), run while new deployments are refused.
 * Industry target for recovery: under 60 s; Cutover's: under 1 s with 0 failed requests.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ControllerView } from '../plugin-api/controller-view.ts';
import { CutoverError } from '../lib/errors.ts';
import { startLoad } from '../gates/load-generator.ts';

export const DRILL_TARGET_MS = 1_000; // ours; the usual industry RTO target is 60 s
export const DEFAULT_DRILL_RATE = 50; // probe requests per second
export const DEFAULT_DRILL_CONNECTIONS = 4;
export const DEFAULT_DRILL_HOLD_MS = 500; // time on the standby before flipping back
export const DRILL_SETTLE_MS = 300; // probes before the first flip and after the last
export const PROBE_HEADER = 'x-cutover-probe';

export interface DrillOptions {
  path: string;
  rate: number;
  connections: number;
  holdMs: number;
  actor: string;
}

export interface DrillFlip {
  from: { color: string; version: string | null };
  to: { color: string; version: string | null };
  /** From the rollback call to the route swap being in force. */
  ms: number;
}

export interface DrillReport {
  outcome: 'passed' | 'failed';
  flips: DrillFlip[];
  /** The slower flip: the time to recover by switching. */
  recoveryMs: number;
  targetMs: number;
  probes: { sent: number; failed: number; byClass: Record<string, number>; path: string; rate: number; firstFailureAt: number | null };
  durationMs: number;
  error: string | null;
}

export async function runDrill(controller: ControllerView, liveUrl: string, o: DrillOptions): Promise<DrillReport> {
  return controller.exclusive('a rollback drill', async () => {
    const status = controller.status();
    const live = status.live;
    const standby = status.standby;
    if (!live || !standby) throw new CutoverError('CUTOVER_ERR_INVALID_STATE', 'a drill needs a live colour and a warm standby (deploy twice first)');
    if (standby.state !== 'warm') throw new CutoverError('CUTOVER_ERR_INVALID_STATE', `the standby ${standby.color} (${standby.version}) is retired; a drill needs a warm standby (deploy again to get one)`);
    // After an automatic rollback the failed release stays warm as the standby: never drill live traffic onto it.
    const last = controller.history({ limit: 50 }).find((d) => d.color === standby.color && d.version === standby.version);
    if (last && last.status !== 'succeeded') {
      throw new CutoverError('CUTOVER_ERR_INVALID_STATE', `the standby ${standby.color} runs ${standby.version}, whose deployment ${last.id} ${last.status === 'rolled-back' ? 'was rolled back' : `ended ${last.status}`}; a drill would send live traffic to it (deploy a good release first)`);
    }
    const healthy = status.environments[standby.color as 'blue' | 'green'].healthy;
    if (healthy === 0) throw new CutoverError('CUTOVER_ERR_NO_HEALTHY_INSTANCE', `the standby ${standby.color} (${standby.version}) has no healthy instance; a drill would route to nothing`);

    const t0 = performance.now();
    controller.record({ type: 'drill.started', actor: o.actor, color: standby.color as 'blue', version: standby.version, reason: `drill by ${o.actor}: live ${live.color} (${live.version}) → ${standby.color} (${standby.version}) and back, under ${o.rate} req/s probes to ${o.path}` });
    let firstFailureAt: number | null = null;
    const probes = startLoad({
      url: `${liveUrl}${o.path}`, connections: o.connections, rate: o.rate, durationMs: 120_000,
      headers: { [PROBE_HEADER]: 'drill' }, requestTimeoutMs: 5_000,
      onResult: (r) => { if ((r.status === null || r.status >= 500) && firstFailureAt === null) firstFailureAt = r.at; },
    });
    const flips: DrillFlip[] = [];
    let error: string | null = null;
    try {
      await sleep(DRILL_SETTLE_MS);
      const there = await controller.rollback({ actor: o.actor, reason: `drill: flip to the standby ${standby.color} (${standby.version})` });
      flips.push({ from: { color: live.color, version: live.version }, to: there.live, ms: there.ms });
      await sleep(o.holdMs);
      const back = await controller.rollback({ actor: o.actor, reason: `drill: flip back to ${live.color} (${live.version})` });
      flips.push({ from: there.live, to: back.live, ms: back.ms });
      await sleep(DRILL_SETTLE_MS);
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
    } finally {
      probes.stop();
    }
    const p = await probes.done;
    const failed = p.byClass['5xx'] + p.byClass.failed;
    const recoveryMs = flips.length > 0 ? Math.max(...flips.map((f) => f.ms)) : Number.NaN;
    const outcome = error === null && failed === 0 && flips.length === 2 ? 'passed' : 'failed';
    const report: DrillReport = {
      outcome, flips, recoveryMs, targetMs: DRILL_TARGET_MS,
      probes: { sent: p.requests, failed, byClass: p.byClass, path: o.path, rate: o.rate, firstFailureAt },
      durationMs: performance.now() - t0, error,
    };
    controller.record({
      type: 'drill', actor: o.actor, durationMs: report.durationMs,
      reason: error !== null
        ? `drill failed: ${error}; ${p.requests} probe(s), ${failed} failed`
        : `drill ${outcome}: ${flips.map((f) => `${f.from.color} → ${f.to.color} in ${f.ms.toFixed(1)}ms`).join(', ')}; ${p.requests} probe(s), ${failed} failed (target: recovery < ${DRILL_TARGET_MS}ms, 0 failed)`,
      data: { ...report },
    });
    return report;
  });
}
