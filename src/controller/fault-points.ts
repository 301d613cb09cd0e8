/**
 * TEST-ONLY fault injection for the kill -9 tests (test/faults-crash.test.ts, issue #6).
 *
 * `CUTOVER_TEST_CRASH_AT=<point>` or `<point>:<version>` in the daemon's environment makes it kill
 * itself with SIGKILL when it reaches that point (for that release only, when a version is given),
 * so a test can crash it at an exact moment of the pipeline instead of racing a timer. Unset — as
 * always outside tests — it does nothing but read one environment variable.
 *
 * Points: `provision` (the release's processes started, not yet recorded), `health`, `gates`,
 * `analysis` (each at the start of its phase, once the phase is recorded), `switch` (after the
 * write-ahead commit, before the route swap), `drain` (after the swap, while the old colour drains),
 * `retirement` (the standby's processes stopped, before that is recorded). Several points, comma
 * separated (`health:v2,switch:v3`), arm each of them (a fleet test starts every controller with
 * the same list, and whichever leads when that release runs dies there).
 */
import type { DeploymentPhase } from '../store/types.ts';

export type CrashPoint = Exclude<DeploymentPhase, 'stable'> | 'drain' | 'retirement';

export const CRASH_ENV = 'CUTOVER_TEST_CRASH_AT';

export function crashPoint(point: CrashPoint, version: string | null): void {
  const want = process.env[CRASH_ENV];
  if (want === undefined || want === '') return;
  for (const one of want.split(',')) {
    const i = one.indexOf(':');
    const p = i === -1 ? one : one.slice(0, i);
    if (p !== point || (i !== -1 && one.slice(i + 1) !== version)) continue;
    process.kill(process.pid, 'SIGKILL'); // delivered on return from the syscall: nothing after it runs
  }
}
