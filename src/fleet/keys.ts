/**
 * The etcd key layout of a fleet, one place for it. Everything of an app lives under
 * `<prefix>/<app>/`, and every route table is per service, so that many services on one router
 * (issue 18) are more keys, not a new layout:
 *
 *   <prefix>/<app>/routes/<service>          the route table (JSON RouteTable); one txn per write
 *   <prefix>/<app>/routers/<id>              a router's registration, under its lease
 *   <prefix>/<app>/acks/<service>/<id>       {revision, appliedAt, seenAt} it applied, under its lease
 *   <prefix>/<app>/drains/<service>/<id>     its drain report of a revision that moved live traffic, under its lease
 *
 *   <prefix>/<app>/leader                    the leading controller {id, admin, …}, under its lease (issue 11)
 *   <prefix>/<app>/controllers/<id>          every controller's registration, under its lease
 *   <prefix>/<app>/state/…                   controller state in fleet mode (store/etcd-store.ts)
 *   <prefix>/<app>/admin/token-sha256        the admin token's SHA-256 (hex), never the token
 *
 * Fencing (issue 11): every write of the route table and of state is one transaction that
 * compares the leader key's create revision with the one this controller created it at.
 */

/** The one service of a config without `services:`. */
export const DEFAULT_SERVICE = 'default';

export interface FleetKeys {
  root: string;
  routes: (service: string) => string;
  routersPrefix: string;
  router: (id: string) => string;
  acksPrefix: (service: string) => string;
  ack: (service: string, id: string) => string;
  drainsPrefix: (service: string) => string;
  drain: (service: string, id: string) => string;
  leader: string;
  controllersPrefix: string;
  controller: (id: string) => string;
  statePrefix: string;
  tokenHash: string;
}

export function fleetKeys(prefix: string, app: string): FleetKeys {
  const root = `${prefix.replace(/\/+$/, '')}/${app}/`;
  return {
    root,
    routes: (service) => `${root}routes/${service}`,
    routersPrefix: `${root}routers/`,
    router: (id) => `${root}routers/${id}`,
    acksPrefix: (service) => `${root}acks/${service}/`,
    ack: (service, id) => `${root}acks/${service}/${id}`,
    drainsPrefix: (service) => `${root}drains/${service}/`,
    drain: (service, id) => `${root}drains/${service}/${id}`,
    leader: `${root}leader`,
    controllersPrefix: `${root}controllers/`,
    controller: (id) => `${root}controllers/${id}`,
    statePrefix: `${root}state/`,
    tokenHash: `${root}admin/token-sha256`,
  };
}

/** A router's registration. */
export interface RouterRegistration {
  id: string;
  host: string;
  pid: number;
  version: string;
  startedAt: number;
  live: string;
  preview: string | null;
}

/** What a router writes back for a service: the revision it serves. */
export interface RouterAck {
  revision: number;
  /** When it applied that revision (epoch ms, its clock). */
  appliedAt: number;
  /** Heartbeat: when it last wrote this key (epoch ms, its clock). */
  seenAt: number;
}
