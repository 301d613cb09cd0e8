/**
 * `command` gate: a shell command (a smoke suite) run in the release directory with the preview
 * and live URLs in its environment. Exit 0 passes. It runs in its own process group so that a
 * timeout or an abort kills everything it started (npm → node → workers), not only the shell.
 */
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { ms, type GateResult, type GateTarget } from './types.ts';

/** Output kept with the result: the last lines, at most this many characters. */
export const OUTPUT_TAIL_CHARS = 4_096;
export const OUTPUT_TAIL_LINES = 40;
/** After SIGTERM at the timeout, how long the group gets before SIGKILL. */
export const COMMAND_KILL_GRACE_MS = 2_000;

export function runCommandGate(name: string, command: string, target: GateTarget, timeoutMs: number, extraEnv: NodeJS.ProcessEnv = process.env): Promise<GateResult> {
  const t0 = performance.now();
  const thresholds = { exitCode: 0, timeoutMs };
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], {
      cwd: target.cwd,
      detached: true, // own process group: kill(-pid) reaches every descendant
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...extraEnv,
        CUTOVER_PREVIEW_URL: target.url,
        CUTOVER_LIVE_URL: target.liveUrl ?? '',
        CUTOVER_VERSION: target.version,
        CUTOVER_COLOR: target.color,
        CUTOVER_GATE: name,
      },
    });
    let tail = '';
    const keep = (d: Buffer) => {
      tail += d.toString('utf8');
      if (tail.length > OUTPUT_TAIL_CHARS * 2) tail = tail.slice(-OUTPUT_TAIL_CHARS);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);

    let timedOut = false;
    let aborted = false;
    let killTimer: NodeJS.Timeout | null = null;
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch { /* already gone */ }
    };
    const stop = () => {
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), COMMAND_KILL_GRACE_MS);
    };
    const timer = setTimeout(() => { timedOut = true; stop(); }, timeoutMs);
    const onAbort = () => { aborted = true; stop(); };
    target.signal.addEventListener('abort', onAbort, { once: true });

    child.on('error', (err) => {
      clearTimeout(timer);
      target.signal.removeEventListener('abort', onAbort);
      const durationMs = performance.now() - t0;
      resolve({ gate: name, kind: 'command', outcome: 'failed', reason: `${name}: \`${command}\` could not start: ${err.message}`, values: { error: err.message, durationMs }, thresholds, durationMs });
    });
    // 'exit', not 'close': a grandchild that escaped the group may hold the pipes open forever.
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      target.signal.removeEventListener('abort', onAbort);
      // Whatever the group left running goes with it.
      killGroup('SIGKILL');
      if (killTimer) clearTimeout(killTimer);
      // Let the last buffered output arrive, then stop reading.
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        const durationMs = performance.now() - t0;
        if (aborted) { reject(target.signal.reason); return; }
        const output = tailOf(tail);
        const values = { exitCode: code, signal, durationMs, timedOut };
        const last = lastLine(output);
        if (timedOut) {
          resolve({ gate: name, kind: 'command', outcome: 'failed', reason: `${name}: \`${command}\` timed out after ${ms(timeoutMs)} and was killed${last ? `; last output: ${last}` : ''}`, values, thresholds, durationMs, output });
        } else if (code === 0) {
          resolve({ gate: name, kind: 'command', outcome: 'passed', reason: `${name}: \`${command}\` exited 0 in ${ms(durationMs)}`, values, thresholds, durationMs, output });
        } else {
          resolve({ gate: name, kind: 'command', outcome: 'failed', reason: `${name}: \`${command}\` exited with ${signal ?? `code ${code}`} after ${ms(durationMs)}${last ? `; last output: ${last}` : ''}`, values, thresholds, durationMs, output });
        }
      }, 20);
    });
  });
}

/** The last OUTPUT_TAIL_LINES lines, at most OUTPUT_TAIL_CHARS characters. */
export function tailOf(text: string): string {
  const lines = text.replace(/\s+$/, '').split('\n');
  const t = lines.slice(-OUTPUT_TAIL_LINES).join('\n');
  return t.length > OUTPUT_TAIL_CHARS ? `…${t.slice(-OUTPUT_TAIL_CHARS)}` : t;
}

function lastLine(output: string): string {
  const l = output.split('\n').filter((x) => x.trim() !== '').at(-1) ?? '';
  return l.length > 160 ? `${l.slice(0, 160)}…` : l;
}
