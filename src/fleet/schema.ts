/**
 * `fleet:` in cutover.yaml (DESIGN contract): absent = one machine (embedded SQLite, a router
 * process next to the controller); present = routers on any hosts meet the controller in etcd.
 */
import { z } from 'zod';
import { duration } from '../config/fields.ts';

/** Router (and later controller) liveness lease: 5 seconds. */
export const DEFAULT_LEASE_TTL_MS = 5_000;
/** A switch waits this long for every router's acknowledgement: 5 seconds. */
export const DEFAULT_ACK_TIMEOUT_MS = 5_000;
export const DEFAULT_FLEET_PREFIX = '/cutover';

const endpoint = z.string().regex(/^(https?:\/\/)?[^\s/]+:\d+$/, 'expected host:port (or http(s)://host:port) of an etcd member');

export const fleetSchema = z.strictObject({
  etcd: z.strictObject({
    endpoints: z.array(endpoint).min(1, 'expected at least one etcd member (three or more for a fleet that survives one failure)'),
    prefix: z.string().regex(/^\/[A-Za-z0-9_./-]*[^/]$|^\/$/, 'expected an absolute key prefix like "/cutover"').default(DEFAULT_FLEET_PREFIX),
  }),
  /** etcd leases are whole seconds: rounded up, at least 1s. */
  leaseTtl: duration.default(DEFAULT_LEASE_TTL_MS).refine((ms) => ms >= 1_000, 'must be at least 1s'),
  ackTimeout: duration.default(DEFAULT_ACK_TIMEOUT_MS).refine((ms) => ms >= 10, 'must be at least 10ms'),
});

export type FleetConfig = z.infer<typeof fleetSchema>;
