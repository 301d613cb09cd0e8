/**
 * `cutover status --watch`: follow the live state. Redraws the status whenever an event arrives
 * (a burst, like a switch, redraws once) and at least every WATCH_REFRESH_MS (instance health
 * changes are not all events). On a terminal the screen is redrawn in place; elsewhere each
 * state is printed after a timestamp line; with --json, one JSON document per line.
 *
 * Owns: the follow loop. Must never: exit on a transient stream break (it reconnects).
 */
import type { AdminClient } from '../api/client.ts';
import type { Status } from '../plugin-api/status.ts';
import { CutoverError } from '../lib/errors.ts';
import type { Io } from './context.ts';
import { printStatus } from './status.ts';
import { isInteractive } from './live-steps.ts';

export const WATCH_REFRESH_MS = 5_000;
const BURST_MS = 100;
const RECONNECT_MS = 1_000;
const CLEAR_SCREEN = '\x1b[H\x1b[2J';

export async function watchStatus(io: Io, client: AdminClient, o: { json: boolean; signal?: AbortSignal }): Promise<void> {
  const tty = !o.json && isInteractive(io);
  let last = '';
  let timer: NodeJS.Timeout | null = null;
  let drawing = Promise.resolve();
  const draw = async () => {
    const s = await client.call<Status>('GET', '/status');
    const text = JSON.stringify(s);
    if (text === last) return; // nothing changed: keep the screen (and logs) quiet
    last = text;
    if (o.json) { io.stdout.write(`${text}\n`); return; }
    if (tty) io.stdout.write(CLEAR_SCREEN);
    else io.stdout.write(`--- ${new Date().toISOString()}\n`);
    printStatus(io, s);
    if (tty) io.stdout.write(`\nwatching (Ctrl-C to stop); updated ${new Date().toLocaleTimeString()}\n`);
  };
  const schedule = () => {
    timer ??= setTimeout(() => {
      timer = null;
      drawing = drawing.then(draw).catch(() => undefined);
    }, BURST_MS);
  };
  const tick = setInterval(schedule, WATCH_REFRESH_MS);
  try {
    await draw();
    while (!o.signal?.aborted) {
      try {
        // Only new events: each (re)connect redraws from /status, so the stored log is not replayed.
        await client.follow({ backlog: false, signal: o.signal, onMessage: () => { schedule(); } });
      } catch (err) {
        if (!(err instanceof CutoverError) || err.code !== 'CUTOVER_ERR_UNREACHABLE') throw err;
        if (!tty && !o.json) io.stderr.write(`cutover: ${err.message}; retrying\n`);
      }
      if (o.signal?.aborted) break;
      await new Promise((r) => setTimeout(r, RECONNECT_MS));
    }
  } finally {
    clearInterval(tick);
    if (timer) clearTimeout(timer);
    await drawing;
  }
}
