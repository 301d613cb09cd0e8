/**
 * The status document: what `GET /api/v1/status` answers, what `cutover status` prints and what
 * the metrics' state gauges read. One type for all three; the controller builds it.
 * Extend it (new optional keys), never rename: `status --json` is part of the external contract.
 */
import type { Color } from '../environments/types.ts';
import type { DeploymentRecord, EnvironmentState } from '../store/types.ts';

export interface InstanceStatus {
  id: string;
  host: string;
  port: number;
  /** OS process id (process provider), null for static targets. */
  pid: number | null;
  healthy: boolean;
  startedAt: number;
}

/** A colour as stored (role, release, since, retireAt), plus what runs and how healthy it is. */
export interface EnvironmentStatus extends EnvironmentState {
  instances: InstanceStatus[];
  /** How many of `instances` pass their health check. */
  healthy: number;
}

/** Whether the rollback target can still serve the database (migrations plugin). */
export interface RollbackTargetStatus {
  color: Color;
  version: string | null;
  state: 'warm' | 'retired';
  /** False when the database has a contract migration it lacks, or the last standby watch failed. */
  canServe: boolean;
  problems: string[];
  /** The last replay of recorded read-only traffic against the warm standby after a migration. */
  lastCheck: { after: string; checkedAt: number; outcome: 'passed' | 'failed' | 'skipped'; checked: number; failures: string[]; reason: string } | null;
}

/** A section a plugin adds to the status (Controller.extendStatus): `migrations` today. */
export interface MigrationsStatus {
  pending: string[];
  error?: string;
  rollbackTarget?: RollbackTargetStatus | null;
  /** Requests in the traffic sample the compatibility run replays. */
  sampledRequests?: number;
}

export interface Status {
  app: string;
  live: { color: Color; version: string | null; since: number; healthy: number } | null;
  standby: {
    color: Color; version: string | null; state: 'warm' | 'retired'; retireAt: number | null;
    /**
     * While a deployment runs on the standby's colour: the candidate's version. The standby keeps
     * running beside it (held) until the switch, and is still the rollback target if it fails.
     */
    besideCandidate?: string | null;
    /** Held standby only: its instance count and how many are healthy (its colour's row shows the candidate). */
    instances?: number;
    healthy?: number;
  } | null;
  /** The deployment in progress, null when none. */
  deployment: DeploymentRecord | null;
  environments: Record<Color, EnvironmentStatus>;
  router: {
    /** The controller's current route revision. */
    revision: number;
    live: string;
    preview: string | null;
    /** A gradual switch in progress: the share of live traffic on `color`. Absent: none. */
    split?: { color: Color; share: number } | null;
    /** A mirror gate copying live requests to the candidate. Absent: none. */
    mirror?: { id: string; sample: number } | null;
  };
  /**
   * Every router behind the data plane and the revision it acknowledged (a router process on one
   * machine, or a fleet); absent for the embedded router. "Every router applied the current
   * table" reads `routers.every((r) => r.revision === router.revision && !r.stale)`.
   */
  routers?: import('../router/data-plane.ts').RouterInfo[];
  /** Present when cutover.yaml has a `database:` section. */
  migrations?: MigrationsStatus;
  /** Other plugin sections (Controller.extendStatus). */
  [section: string]: unknown;
}
