/**
 * What a plugin may see of the controller and ask of it: read the state and the record, add a
 * status section, record events, and ask for a rollback (the drill). It has no way to swap
 * routes: the controller decides every traffic move and carries it out itself.
 */
import type { EventEmitter } from 'node:events';
import type { Color } from '../environments/types.ts';
import type { DeploymentRecord, EnvironmentState, EventInput, EventRecord } from '../store/types.ts';
import type { Status } from './status.ts';
import type { MirrorSpec } from '../router/route-table.ts';

export interface ControllerEvents {
  event: [EventRecord];
  deployment: [DeploymentRecord];
}

export interface ControllerView extends Pick<EventEmitter<ControllerEvents>, 'on' | 'off'> {
  status(): Status;
  /** Each colour's role, release and directory as stored: cheap, and safe to call from a status section. */
  environments(): Record<Color, EnvironmentState>;
  history(opts?: { limit?: number; since?: number }): DeploymentRecord[];
  events(opts?: { afterSeq?: number; deployment?: string; limit?: number }): EventRecord[];
  /** Record an event (time, actor, reason); returns when it is durable. */
  record(e: EventInput): void;
  /**
   * Add a section to status() under `name` (e.g. `migrations`). The function must be cheap and
   * synchronous (status is polled); a built-in key cannot be replaced.
   */
  extendStatus(name: string, section: () => unknown): void;
  /** Run `fn` with new deployments refused (a rollback drill flips live and back). */
  exclusive<T>(reason: string, fn: () => Promise<T>): Promise<T>;
  /**
   * Ask the controller to mirror live requests to the candidate by `spec` (a `mirror` or `session`
   * gate), or to stop (null). Never changes which colour answers a live request: copies only.
   */
  setMirror(spec: MirrorSpec | null): Promise<void>;
  /** Ask the controller to switch back to the standby; it checks, persists and swaps. */
  rollback(opts: { actor: string; reason?: string }): Promise<{ ms: number; restarted: boolean; live: { color: Color; version: string | null } }>;
}
