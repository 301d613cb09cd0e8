/**
 * The live step list of `cutover deploy`: on a terminal, a spinner line under the finished steps
 * showing the phase in progress and its running time; elsewhere (pipes, CI logs) only the plain
 * step lines, one per event, exactly as stepLine() formats them.
 *
 * Owns: terminal redraws. Must never: write control codes to a non-terminal, or hide a step line.
 */
import { formatDuration } from '../lib/duration.ts';
import type { DeploymentRecord, EventRecord } from '../store/types.ts';
import type { Io } from './context.ts';
import { stepLine } from './format.ts';

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
export const SPINNER_INTERVAL_MS = 80;
const CLEAR_LINE = '\r\x1b[2K';

/** A terminal that can take redraws: a TTY, not TERM=dumb, and not turned off with CUTOVER_PLAIN. */
export function isInteractive(io: Io): boolean {
  return io.stdout.isTTY === true && io.env.TERM !== 'dumb' && !io.env.CUTOVER_PLAIN && !io.env.CI;
}

export class LiveSteps {
  private readonly io: Io;
  private readonly tty: boolean;
  private timer: NodeJS.Timeout | null = null;
  private frame = 0;
  private phase: { name: string; since: number; waiting: boolean } | null = null;
  private readonly now: () => number;

  constructor(io: Io, opts: { interactive?: boolean; now?: () => number } = {}) {
    this.io = io;
    this.tty = opts.interactive ?? isInteractive(io);
    this.now = opts.now ?? Date.now;
  }

  /** A pipeline event: print its step line (if it has one) above the spinner. */
  event(e: EventRecord): void {
    const line = stepLine(e);
    if (line === null) return;
    this.write(`${line}\n`);
  }

  /** A deployment update: the spinner follows its phase. */
  deployment(d: DeploymentRecord): void {
    if (!this.tty) return;
    const waiting = d.status === 'awaiting-promotion';
    if (this.phase?.name !== d.phase || this.phase.waiting !== waiting) this.phase = { name: d.phase, since: this.now(), waiting };
    this.timer ??= setInterval(() => this.draw(), SPINNER_INTERVAL_MS);
    this.draw();
  }

  /** Stop the spinner and print the summary line. */
  finish(summary: string): void {
    this.stop();
    this.io.stdout.write(`${summary}\n`);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.tty && this.phase) this.io.stdout.write(CLEAR_LINE);
    this.phase = null;
  }

  private write(text: string): void {
    if (this.tty && this.phase) this.io.stdout.write(CLEAR_LINE);
    this.io.stdout.write(text);
    if (this.tty && this.phase) this.draw();
  }

  private draw(): void {
    const p = this.phase;
    if (!p) return;
    this.frame = (this.frame + 1) % FRAMES.length;
    const what = p.waiting ? 'waiting for `cutover promote`' : `${p.name}…`;
    this.io.stdout.write(`${CLEAR_LINE}  ${FRAMES[this.frame]} ${what} ${formatDuration(this.now() - p.since)}`);
  }
}
