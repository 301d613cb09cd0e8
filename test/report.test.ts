/** The release report's figures against a known history, and how `cutover report` prints them. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeReport } from '../src/telemetry/report.ts';
import { printReport } from '../src/cli/report.ts';
import type { DeploymentRecord, EventRecord } from '../src/store/types.ts';

const MIN = 60_000;
const T0 = Date.UTC(2026, 0, 1);

function dep(id: string, version: string, color: 'blue' | 'green', createdAt: number, status: DeploymentRecord['status'], switchMs: number | null): DeploymentRecord {
  return {
    id, version, path: null, color, fromColor: null, fromVersion: null, status, phase: 'stable', manual: false, actor: 'ci',
    createdAt, updatedAt: createdAt, finishedAt: status === 'running' ? null : createdAt + MIN, error: null, gates: null, forced: false, switchMs,
  };
}

let seq = 0;
function ev(time: number, type: string, deployment: string | null, o: Partial<EventRecord> = {}): EventRecord {
  return { seq: ++seq, time, type, deployment, phase: null, actor: 'cutover', reason: type, durationMs: null, color: null, version: null, data: null, ...o };
}
const measured = (time: number, deployment: string, requests: number, errorRate: number, baseline: { requests: number; errorRate: number } | null) =>
  ev(time, 'release.measured', deployment, { data: { windowMs: 5 * MIN, requests, errorRate, p95Ms: 12, baseline: baseline && { ...baseline, p95Ms: 10 } } });

// A known month: seven releases in the window, one before it.
const deployments = [
  dep('d0', 'v0', 'green', T0 - 40 * 24 * 60 * MIN, 'succeeded', 9), // outside the 30-day window
  dep('d1', 'v1', 'blue', T0, 'succeeded', 2), // first release
  dep('d2', 'v2', 'green', T0 + 10 * MIN, 'succeeded', 3), // rolled back by hand a minute after its switch
  dep('d3', 'v3', 'green', T0 + 100 * MIN, 'rolled-back', 4), // analysis failed: automatic rollback after 30 s
  dep('d4', 'v4', 'green', T0 + 200 * MIN, 'failed', null), // gates failed: never switched
  dep('d5', 'v5', 'green', T0 + 300 * MIN, 'aborted', null),
  dep('d6', 'v6', 'green', T0 + 400 * MIN, 'succeeded', 1),
  dep('d7', 'v7', 'blue', T0 + 500 * MIN, 'running', null),
];
const events = [
  ev(T0 - 40 * 24 * 60 * MIN + 1000, 'switch', 'd0', { durationMs: 9 }),
  ev(T0 + 1000, 'switch', 'd1', { durationMs: 2 }),
  ev(T0 + 10 * MIN + 1000, 'switch', 'd2', { durationMs: 3 }),
  measured(T0 + 10 * MIN + 1001 + 60_000, 'd2', 1000, 0.02, { requests: 500, errorRate: 0.01 }),
  ev(T0 + 10 * MIN + 1000 + 60_000, 'rollback', null, { actor: 'alice', durationMs: 2 }),
  ev(T0 + 100 * MIN + 1000, 'switch', 'd3', { durationMs: 4 }),
  ev(T0 + 100 * MIN + 1000 + 30_000, 'rollback', 'd3', { actor: 'cutover', durationMs: 2 }),
  measured(T0 + 100 * MIN + 1001 + 30_000, 'd3', 200, 0.1, { requests: 800, errorRate: 0.005 }),
  ev(T0 + 400 * MIN + 1000, 'switch', 'd6', { durationMs: 1 }),
  measured(T0 + 405 * MIN + 1000, 'd6', 1000, 0, { requests: 1000, errorRate: 0.01 }),
  // Analysis intervals of d3 with per-colour auth figures (401/403/419, session loss).
  ev(T0 + 100 * MIN + 11_000, 'analysis', 'd3', { data: { auth: { green: auth(100, 50, 10, 0.2), blue: auth(100, 60, 0, 0) } } }),
  ev(T0 + 100 * MIN + 21_000, 'analysis', 'd3', { data: { auth: { green: auth(100, 50, 0, 0), blue: auth(100, 40, 0, 0) } } }),
];

function auth(requests: number, withCredentials: number, n401: number, sessionLossRate: number) {
  return { requests, withCredentials, authFailures: { 401: n401, 403: 0, 419: 0 }, sessionLossRate };
}
const window = { since: T0 - 30 * 24 * 60 * MIN + 1, until: T0 + 600 * MIN };

test('release figures from a known history', () => {
  const r = computeReport(deployments, events, window);
  assert.deepEqual(r.deployments, { total: 7, succeeded: 3, failed: 1, rolledBack: 1, aborted: 1, interrupted: 0, inProgress: 1 });
  assert.equal(r.deploymentSuccessRate, 3 / 6);
  assert.deepEqual(r.cutovers, { switched: 4, kept: 2, rolledBack: 2 });
  assert.equal(r.cutoverSuccessRate, 0.5);
  assert.deepEqual(r.timeToSwitchMs, { count: 4, mean: 2.5, p50: 2, p95: 4, max: 4 });
  assert.deepEqual(r.rollbacks, { count: 2, automatic: 1, manual: 1 });
  assert.equal(r.meanTimeToRollbackMs, (60_000 + 30_000) / 2);
  assert.deepEqual(r.rollbackMs, { count: 2, mean: 2, p50: 2, p95: 2, max: 2 });
  assert.ok(r.postSwitch);
  assert.equal(r.postSwitch.releases, 3);
  assert.equal(r.postSwitch.requests, 2200);
  assert.equal(r.postSwitch.errorRate, (1000 * 0.02 + 200 * 0.1 + 0) / 2200);
  assert.equal(r.postSwitch.baselineRequests, 2300);
  assert.ok(Math.abs(r.postSwitch.baselineErrorRate! - (500 * 0.01 + 800 * 0.005 + 1000 * 0.01) / 2300) < 1e-12);
  assert.equal(r.postSwitch.worseThanBaseline, 2);

  assert.deepEqual(r.releases.map((x) => x.id), ['d7', 'd6', 'd5', 'd4', 'd3', 'd2', 'd1'], 'newest first; d0 is outside the window');
  const d2 = r.releases.find((x) => x.id === 'd2')!;
  assert.equal(d2.rolledBack, true);
  assert.equal(d2.rollbackTrigger, 'manual');
  assert.equal(d2.timeToRollbackMs, 60_000);
  const d3 = r.releases.find((x) => x.id === 'd3')!;
  assert.equal(d3.rollbackTrigger, 'automatic');
  assert.equal(d3.timeToRollbackMs, 30_000);
  assert.equal(r.releases.find((x) => x.id === 'd4')!.switched, false);
});

test('an empty window has no rates rather than zero ones', () => {
  const r = computeReport([], [], window);
  assert.equal(r.deployments.total, 0);
  assert.equal(r.deploymentSuccessRate, null);
  assert.equal(r.cutoverSuccessRate, null);
  assert.equal(r.timeToSwitchMs, null);
  assert.equal(r.meanTimeToRollbackMs, null);
  assert.equal(r.postSwitch, null);
});

test('cutover report prints the figures and one line per release', () => {
  let out = '';
  const io = { stdout: { write: (s: string) => { out += s; return true; } }, stderr: process.stderr, env: {}, cwd: '/' } as unknown as Parameters<typeof printReport>[0];
  printReport(io, computeReport(deployments, events, window), '30d');
  assert.match(out, /^releases in the last 30d: 7 deployment\(s\) \(1 in progress\)$/m);
  assert.match(out, /^deployment success rate +50\.0% +\(3 of 6 finished; 1 failed, 1 rolled back, 1 aborted\)$/m);
  assert.match(out, /^cutover success rate +50\.0% +\(2 of 4 switches kept\)$/m);
  // The rollback's own duration and the time the release was live before it are two figures (issue 16).
  assert.match(out, /^rollbacks +2 +\(1 automatic, 1 manual\); each took p50 2ms, max 2ms$/m);
  assert.match(out, /^live before rollback +45s mean +\(switch → rollback: how long users had a release that was rolled back\)$/m);
  assert.match(out, /^errors after switch +1\.8% against 0\.8% before +\(2 of 3 release\(s\) worse than baseline\)$/m);
  assert.match(out, /^v2 +green +rolled back later +3ms +1m(0s)? +2\.0% +1\.0% +- +d2$/m);
  assert.match(out, /^v3 +green +rolled-back +4ms +30s +10\.0% +0\.5% +green 10 \/ 10\.0% · blue 0 \/ 0\.0% +d3$/m);
  assert.match(out, /^session loss +10\.0% +\(10 auth failure\(s\) 401\/403\/419 on the new colours, 100 request\(s\) with credentials, 1 release\(s\)\)$/m);
});

test('auth failures and session loss per colour are summed from the analysis events of a release', () => {
  const r = computeReport(deployments, events, window);
  const d3 = r.releases.find((x) => x.id === 'd3')!;
  assert.deepEqual(d3.auth, {
    green: { requests: 200, withCredentials: 100, authFailures: { 401: 10, 403: 0, 419: 0 }, sessionLossRate: 0.1 },
    blue: { requests: 200, withCredentials: 100, authFailures: { 401: 0, 403: 0, 419: 0 }, sessionLossRate: 0 },
  });
  assert.deepEqual(r.sessions, { releases: 1, withCredentials: 100, authFailures: 10, sessionLossRate: 0.1 });
  assert.equal(r.releases.find((x) => x.id === 'd2')!.auth, null);
});
