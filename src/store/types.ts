/**
 * What Cutover remembers, behind one interface: SQLite by default (sqlite-store.ts), etcd for a
 * fleet of controllers (etcd-store.ts). The same contract tests run against both
 * (test/store-contract.test.ts).
 * Every write that moves traffic is one transaction: either the whole new state is durable
 * or none of it is (DESIGN promise 5).
 */
import type { Color, Instance } from '../environments/types.ts';

/** live: serves the live listener. standby: previous live, warm, the rollback target.
 *  candidate: receiving a release. retired: stopped, release remembered. empty: never used. */
export type EnvRole = 'live' | 'standby' | 'candidate' | 'retired' | 'empty';

export interface EnvironmentState {
  color: Color;
  role: EnvRole;
  version: string | null;
  path: string | null;
  /** When the colour took this role (ms since epoch). */
  since: number;
  /** Standby only: when it is due for retirement. */
  retireAt: number | null;
}

/**
 * The warm standby set aside while a release starts on its colour (process provider): the colour's
 * state and instances before the deployment, so that a failed deploy, an abort or a daemon crash
 * before the switch gives it back as the rollback target.
 */
export interface HeldStandby {
  deployment: string;
  env: EnvironmentState;
  instances: Instance[];
}

/** The pipeline's phases, in the order a deployment goes through them; `stable` is where it ends. */
export const DEPLOYMENT_PHASES = ['provision', 'health', 'migrate', 'gates', 'promote', 'switch', 'verify', 'analysis', 'stable'] as const;
export type DeploymentPhase = (typeof DEPLOYMENT_PHASES)[number];
/** Before the switch: traffic untouched; `abort` stops the candidate, `rollback` is refused. */
export const PRE_SWITCH_PHASES: readonly DeploymentPhase[] = ['provision', 'health', 'migrate', 'gates', 'promote'];
/** From the switch on: the new release took traffic; `rollback` switches back, `abort` is refused. */
export const POST_SWITCH_PHASES: readonly DeploymentPhase[] = ['switch', 'verify', 'analysis', 'stable'];
/** After the switch, while the new release is judged: its rollback target must stay warm. */
export const JUDGING_PHASES: readonly DeploymentPhase[] = ['verify', 'analysis'];

export type DeploymentStatus =
  | 'running' | 'awaiting-promotion' | 'succeeded' | 'failed' | 'aborted' | 'rolled-back' | 'interrupted';

export const FINISHED_STATUSES: readonly DeploymentStatus[] = ['succeeded', 'failed', 'aborted', 'rolled-back', 'interrupted'];

export interface DeploymentRecord {
  id: string;
  version: string;
  path: string | null;
  color: Color;
  fromColor: Color | null;
  fromVersion: string | null;
  status: DeploymentStatus;
  phase: DeploymentPhase;
  manual: boolean;
  actor: string;
  createdAt: number;
  updatedAt: number;
  finishedAt: number | null;
  error: { code: string; message: string } | null;
  /** Outcome of the pre-switch gates: null until they ran. */
  gates: 'passed' | 'failed' | 'skipped' | null;
  forced: boolean;
  /** Deployed with `--force` past a schema refusal (the release lacks an applied contract migration). */
  schemaForced?: boolean;
  /** Time from the switch decision to the route swap being in force, ms. */
  switchMs: number | null;
  /**
   * Set when the release was taken off live traffic by a rollback after its deployment finished
   * (`status` stays the pipeline's outcome, e.g. succeeded). Absent on older records.
   */
  rolledBack?: { at: number; actor: string; reason: string } | null;
}

export interface EventInput {
  type: string;
  deployment?: string | null;
  phase?: string | null;
  actor: string;
  reason: string;
  durationMs?: number | null;
  color?: Color | null;
  version?: string | null;
  data?: Record<string, unknown> | null;
}

export interface EventRecord extends Required<EventInput> {
  seq: number;
  time: number;
}

export interface Store {
  environments(): Record<Color, EnvironmentState>;
  instances(color: Color): Instance[];
  deployment(id: string): DeploymentRecord | null;
  activeDeployment(): DeploymentRecord | null;
  deployments(opts?: { limit?: number; since?: number }): DeploymentRecord[];
  events(opts?: { deployment?: string; afterSeq?: number; limit?: number }): EventRecord[];
  /** Sequence number of the newest event, 0 when there is none. */
  lastEventSeq(): number;
  /** The standby held beside a running deployment's candidate, or null. */
  heldStandby(): HeldStandby | null;
  /**
   * One atomic write: environment roles, deployment changes and events together.
   * Returns the events as stored (with seq and time).
   */
  commit(change: {
    environments?: EnvironmentState[];
    deployment?: DeploymentRecord;
    events?: EventInput[];
    instances?: { color: Color; instances: Instance[] }[];
    /** Set (an object) or clear (null) the held standby; absent: unchanged. */
    held?: HeldStandby | null;
  }): EventRecord[];
  /**
   * Resolves once every commit made before the call is durable. SQLite: at once (a commit is
   * durable when it returns). etcd: commits are written behind, in order, each one transaction;
   * the admin API awaits this before it answers a write.
   */
  flush(): Promise<void>;
  close(): void;
}
