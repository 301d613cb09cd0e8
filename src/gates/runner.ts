/**
 * Runs the configured gates in order against one target and records each result as a `gate`
 * event with its values and thresholds. The first failure stops the run (the rest are recorded
 * as not run). Returns the verdict for the phase; it never moves traffic or stops anything.
 */
import { performance } from 'node:perf_hooks';
import type { Gate, GateKind, WarmupSpec } from '../config/gates.ts';
import { runHttpGate } from './http-gate.ts';
import { runCommandGate } from './command-gate.ts';
import { runLoadGate } from './load-gate.ts';
import { runCompareGate } from './compare-gate.ts';
import { runMirrorGate } from './mirror-gate.ts';
import { runSessionGate } from './session-gate.ts';
import { runWarmup } from './warmup.ts';
import { ms, type GateResult, type GateTarget } from './types.ts';

export interface GateEvent {
  type: string;
  phase: string;
  reason: string;
  durationMs?: number;
  data: Record<string, unknown>;
}

export interface GatesVerdict {
  outcome: 'passed' | 'failed' | 'skipped';
  summary: string;
  data: { gates: { gate: string; kind: GateKind; outcome: string; reason: string }[]; failed?: string; values?: Record<string, unknown>; thresholds?: Record<string, unknown> };
}

export interface RunGatesOptions {
  gates: readonly Gate[];
  target: GateTarget;
  /** Phase the events belong to: `gates` (preview) or `verify` (post-switch smoke on live). */
  phase: 'gates' | 'verify';
  warmup?: WarmupSpec;
  record: (e: GateEvent) => void;
  /** Environment for command gates (defaults to the daemon's). */
  commandEnv?: NodeJS.ProcessEnv;
}

export async function runGates(o: RunGatesOptions): Promise<GatesVerdict> {
  if (o.warmup) {
    const w = await runWarmup(o.warmup, o.target.url, o.target.signal);
    o.record({
      type: 'warmup', phase: o.phase, durationMs: w.durationMs,
      reason: `warm-up: ${w.requests} request(s) to ${o.warmup.paths.join(', ')} in ${ms(w.durationMs)} (${w.byClass['2xx']} 2xx, ${w.byClass['5xx']} 5xx, ${w.byClass.failed} failed; not judged)`,
      data: { ...w, paths: o.warmup.paths },
    });
  }
  if (o.gates.length === 0) return { outcome: 'skipped', summary: 'no gates configured', data: { gates: [] } };
  const done: GatesVerdict['data']['gates'] = [];
  let failed: GateResult | null = null;
  for (const gate of o.gates) {
    if (failed) {
      o.record({ type: 'gate', phase: o.phase, reason: `${gate.name}: not run (gate ${failed.gate} failed)`, data: { gate: gate.name, kind: gate.kind, outcome: 'skipped', target: o.target.listener } });
      done.push({ gate: gate.name, kind: gate.kind, outcome: 'skipped', reason: 'not run' });
      continue;
    }
    const r = await runOne(gate, o.target, o.commandEnv);
    o.record({
      type: 'gate', phase: o.phase, durationMs: r.durationMs, reason: r.reason,
      data: { gate: r.gate, kind: r.kind, outcome: r.outcome, target: o.target.listener, values: r.values, thresholds: r.thresholds, ...(r.output !== undefined ? { output: r.output } : {}) },
    });
    done.push({ gate: r.gate, kind: r.kind, outcome: r.outcome, reason: r.reason });
    if (r.outcome === 'failed') failed = r;
  }
  if (failed) {
    return { outcome: 'failed', summary: `gate ${failed.gate} failed: ${failed.reason.slice(failed.gate.length + 2)}`, data: { gates: done, failed: failed.gate, values: failed.values, thresholds: failed.thresholds } };
  }
  const ran = done.filter((g) => g.outcome === 'passed');
  return { outcome: 'passed', summary: `${ran.length} gate(s) passed${ran.length ? `: ${ran.map((g) => g.gate).join(', ')}` : ''}${ran.length < done.length ? ` (${done.length - ran.length} skipped)` : ''}`, data: { gates: done } };
}

/** One gate under its time limit. A deployment abort propagates; the gate's own timeout is a failure. */
async function runOne(gate: Gate, target: GateTarget, commandEnv?: NodeJS.ProcessEnv): Promise<GateResult> {
  switch (gate.kind) {
    case 'http': return runHttpGate(gate.name, gate.http, target, gate.timeout);
    case 'command': return runCommandGate(gate.name, gate.command, target, gate.timeout, commandEnv);
    default: break;
  }
  const t0 = performance.now();
  const limit = new AbortController();
  const timer = setTimeout(() => limit.abort(new Error('gate timeout')), gate.timeout);
  const inner: GateTarget = { ...target, signal: AbortSignal.any([target.signal, limit.signal]) };
  try {
    switch (gate.kind) {
      case 'load': return await runLoadGate(gate.name, gate.load, inner);
      case 'mirror': return await runMirrorGate(gate.name, gate.mirror, inner);
      case 'session': return await runSessionGate(gate.name, gate.session, inner);
      default: return await runCompareGate(gate.name, gate.compare, inner);
    }
  } catch (err) {
    if (target.signal.aborted || !limit.signal.aborted) throw err;
    const durationMs = performance.now() - t0;
    return { gate: gate.name, kind: gate.kind, outcome: 'failed', reason: `${gate.name}: did not finish within ${ms(gate.timeout)}`, values: { durationMs }, thresholds: { timeoutMs: gate.timeout }, durationMs };
  } finally {
    clearTimeout(timer);
  }
}
