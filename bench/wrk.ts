/**
 * wrk as the throughput/latency load generator: runs it and parses its `--latency` report.
 * wrk is C and event-driven, so on a 2-core machine it takes less CPU from the proxy under test
 * than a Node.js generator would.
 */
import { run } from './procs.ts';

export const WRK = '/usr/bin/wrk';

export interface WrkOptions {
  threads: number;
  connections: number;
  durationS: number;
  /** wrk counts a request slower than this as a timeout. */
  timeoutS?: number;
}

export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
  non2xx: number;
}

export async function runWrk(url: string, o: WrkOptions): Promise<WrkResult> {
  const args = ['-t', String(o.threads), '-c', String(o.connections), '-d', `${o.durationS}s`, '--timeout', `${o.timeoutS ?? 5}s`, '--latency', url];
  const out = await run(WRK, args, (o.durationS + 30) * 1000);
  if (out.code !== 0) throw new Error(`wrk ${args.join(' ')} exited with ${out.code}: ${out.stderr || out.stdout}`);
  return parseWrk(out.stdout);
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function timeMs(value: string, unit: string): number {
  const k = UNIT_MS[unit];
  if (k === undefined) throw new Error(`wrk: unknown time unit "${unit}"`);
  return Number(value) * k;
}

/** Parses wrk 4.x output (with --latency). Throws on anything it does not recognise. */
export function parseWrk(text: string): WrkResult {
  const need = (re: RegExp, what: string): RegExpExecArray => {
    const m = re.exec(text);
    if (m === null) throw new Error(`wrk output has no ${what}:\n${text}`);
    return m;
  };
  const pct = (p: string): number => {
    const m = need(new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, 'm'), `${p}% latency`);
    return timeMs(m[1], m[2]);
  };
  const total = need(/^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)/m, 'request count');
  const rps = need(/^Requests\/sec:\s+([\d.]+)/m, 'Requests/sec');
  const max = need(/^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m|h)/m, 'latency line');
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  return {
    requests: Number(total[1]),
    seconds: timeMs(total[2], total[3]) / 1000,
    rps: Number(rps[1]),
    p50Ms: pct('50'),
    p90Ms: pct('90'),
    p99Ms: pct('99'),
    maxMs: timeMs(max[1], max[2]),
    socketErrors: sock === null
      ? { connect: 0, read: 0, write: 0, timeout: 0 }
      : { connect: Number(sock[1]), read: Number(sock[2]), write: Number(sock[3]), timeout: Number(sock[4]) },
    non2xx: non2xx === null ? 0 : Number(non2xx[1]),
  };
}

export function wrkFailures(r: WrkResult): number {
  const e = r.socketErrors;
  return e.connect + e.read + e.write + e.timeout + r.non2xx;
}
