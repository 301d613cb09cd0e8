/**
 * The etcd key layout of a fleet, one place for it. Everything of an app lives under
 * `<prefix>/<app>/`, and every route table is per service, so that many services on one router
 * (issue 18) are more keys, not a new layout:
 *
 *   <prefix>/<app>/routes/<service>          the route table (JSON RouteTable); one txn per write
 *   <prefix>/<app>/routers/<id>              a router's registration, under its lease
 *   <prefix>/<app>/acks/<service>/<id>       {revision, appliedAt, seenAt} it applied, under its lease
 *   <prefix>/<app>/drains/<service>/<id>     its drain report of a revision that moved live traffic, under its lease
 *   <prefix>/<app>/agents/<id>               a `cutover agent`'s registration (AgentRegistration), under its lease
 *   <prefix>/<app>/desired/<service>/<id>    what the controller wants that agent to run (DesiredInstances); no lease
 *   <prefix>/<app>/reported/<service>/<id>   what the agent runs (ReportedInstances), under its lease
 *
 *   <prefix>/<app>/leader                    the leading controller {id, admin, …}, under its lease (issue 11)
 *   <prefix>/<app>/controllers/<id>          every controller's registration, under its lease
 *   <prefix>/<app>/state/…                   controller state in fleet mode (store/etcd-store.ts)
 *   <prefix>/<app>/admin/token-sha256        the admin token's SHA-256 (hex), never the token
 *
 * Fencing (issue 11): every write of the route table and of state is one transaction that
 * compares the leader key's create revision with the one this controller created it at.
 */
import type { Instance } from '../environments/types.ts';

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
  agentsPrefix: string;
  agent: (id: string) => string;
  desiredPrefix: (service: string) => string;
  desired: (service: string, agent: string) => string;
  reportedPrefix: (service: string) => string;
  reported: (service: string, agent: string) => string;
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
    agentsPrefix: `${root}agents/`,
    agent: (id) => `${root}agents/${id}`,
    desiredPrefix: (service) => `${root}desired/${service}/`,
    desired: (service, agent) => `${root}desired/${service}/${agent}`,
    reportedPrefix: (service) => `${root}reported/${service}/`,
    reported: (service, agent) => `${root}reported/${service}/${agent}`,
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

/** A `cutover agent`'s registration: who it is and the address routers reach its instances on. */
export interface AgentRegistration {
  id: string;
  /** Host (name or IP) its instances are reached on by routers and the controller (`--address`). */
  address: string;
  hostname: string;
  pid: number;
  version: string;
  startedAt: number;
}

/** One colour's share on one agent, as the controller wants it. A new `gen` means "start this release afresh". */
export interface DesiredColor {
  version: string;
  /** Release directory on the agent's host. */
  path: string | null;
  /** Instance indices this agent runs (`<color>-<index>`): a colour's instances are spread over agents. */
  slots: number[];
  /** Restart crashed instances (live and standby: yes; a candidate: no, its crash fails the deploy). */
  restart: boolean;
  /** Generation of this wish: bumped by every start, so a report says which wish it answers. */
  gen: number;
}

/** `desired/<service>/<agent>`: written only by the controller, in one fenced transaction per change. */
export interface DesiredInstances {
  colors: Partial<Record<'blue' | 'green', DesiredColor>>;
}

/** One instance as its agent reports it (a provider's Instance, `host` the agent's address), and its state. */
export interface ReportedInstance extends Instance {
  gen: number;
  running: boolean;
  /** Its last unplanned exit (code/signal null when adopted: not the agent's child). */
  exit: { code: number | null; signal: string | null } | null;
  /** Its last log lines when it is down (what the controller quotes in a failure). */
  log: string[];
  logPath: string;
  /** The last restart after a crash. */
  restart: { attempt: number; delayMs: number } | null;
}

/** `reported/<service>/<agent>`: what runs there, under the agent's lease (gone with the agent). */
export interface ReportedInstances {
  agent: string;
  /** Per colour: the generation the agent acted on, and why it could not start it (e.g. no such directory). */
  colors: Partial<Record<'blue' | 'green', { gen: number; error: string | null }>>;
  instances: ReportedInstance[];
  at: number;
}
