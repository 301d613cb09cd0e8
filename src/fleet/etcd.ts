/**
 * The etcd client of a fleet (the `etcd3` package: pure JS over grpc-js), with deadlines, so that
 * an etcd without quorum turns into a clear, prompt error instead of a call that hangs.
 * Owns: client construction and error translation. Must never: hold a decision of its own.
 */
import { Etcd3 } from 'etcd3';
import { CutoverError } from '../lib/errors.ts';
import type { FleetConfig } from './schema.ts';

/** Deadline of one unary etcd call (get, put, txn, lease grant): 2 seconds. */
export const ETCD_CALL_TIMEOUT_MS = 2_000;
/** Time to establish a connection to a member: 2 seconds. */
export const ETCD_DIAL_TIMEOUT_MS = 2_000;

export function openEtcd(fleet: FleetConfig): Etcd3 {
  const hosts = fleet.etcd.endpoints.map((e) => (/^https?:\/\//.test(e) ? e : `http://${e}`));
  return new Etcd3({
    hosts,
    dialTimeout: ETCD_DIAL_TIMEOUT_MS,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + ETCD_CALL_TIMEOUT_MS }),
  });
}

/** An etcd failure as the error callers branch on. */
export function fleetUnavailable(what: string, err: unknown, endpoints: readonly string[]): CutoverError {
  const why = err instanceof Error ? err.message : String(err);
  return new CutoverError('CUTOVER_ERR_FLEET_UNAVAILABLE', `${what}: etcd (${endpoints.join(', ')}) did not answer: ${why}. Routers keep serving their last table; nothing was changed`, { cause: err, details: { endpoints } });
}

/** Wait before reconnecting a long-lived etcd session: 250 ms after a session that ended, doubling to 2 s. */
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 2_000;

/**
 * Keeps a long-lived etcd session (a router's or an agent's: register, watch, report) going:
 * runs `session` (one connection, resolving with why it ended) again until `closed()`, backing
 * off between tries, and tells `onLost` why each one ended while it was still wanted.
 */
export async function keepSession(session: () => Promise<string>, closed: () => boolean, onLost: (why: string) => void): Promise<void> {
  let backoff = RECONNECT_MIN_MS;
  while (!closed()) {
    let why: string;
    try {
      why = await session();
      backoff = RECONNECT_MIN_MS;
    } catch (err) {
      why = (err as Error).message;
    }
    if (closed()) return;
    onLost(why);
    await new Promise((r) => setTimeout(r, backoff));
    backoff = Math.min(backoff * 2, RECONNECT_MAX_MS);
  }
}

export function ttlSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1_000));
}
