/** Shared vocabulary of environments: colours, instances and the provider interface. */
import type { EventEmitter } from 'node:events';

export type Color = 'blue' | 'green';
export const COLORS: readonly Color[] = ['blue', 'green'];
export function otherColor(c: Color): Color { return c === 'blue' ? 'green' : 'blue'; }

/** A release: what runs in an environment. `path` is the release directory (process provider). */
export interface Release {
  version: string;
  path: string | null;
}

/** One running instance of a colour. `id` is stable for the instance's life: `${color}-${index}`. */
export interface Instance {
  id: string;
  color: Color;
  index: number;
  version: string;
  host: string;
  port: number;
  /** OS process id (process provider), null for static targets. */
  pid: number | null;
  /** Release directory, null for static targets. */
  path: string | null;
  startedAt: number;
}

/** Events a provider emits. */
export interface ProviderEvents {
  /** An instance's process exited without being asked to (crash). */
  'instance-exit': [instance: Instance, info: { code: number | null; signal: string | null; reason?: string }];
  /** An instance was restarted after a crash (pid and possibly port changed). */
  'instance-restart': [instance: Instance, info: { attempt: number; delayMs: number }];
  /** The set or addresses of a colour's instances changed; persist and re-route. */
  'instances-changed': [color: Color, instances: Instance[]];
  /** The pids or ports of a colour's held instances changed (a restart after a crash); persist them. */
  'held-changed': [color: Color, instances: Instance[]];
}

/**
 * Starts, stops and lists the instances of a colour. Never touches traffic:
 * the controller decides what is routed, from `instances()` and health.
 */
export interface EnvironmentProvider extends EventEmitter<ProviderEvents> {
  readonly kind: 'process' | 'static';
  /**
   * Check what `deploy --path` gave before anything changes: returns the release path to record,
   * or throws CUTOVER_ERR_RELEASE_PATH (the process provider needs an existing directory; the
   * static provider runs nothing, so any path, or none, is recorded as given). `version` fills a
   * release directory template (process: `releaseDir`) when no path is given.
   */
  checkRelease(path: string | null, version: string): string | null;
  /** Start the release on a colour; resolves once processes are spawned (not yet healthy). */
  start(color: Color, release: Release): Promise<Instance[]>;
  /** Stop every instance of a colour (SIGTERM, then SIGKILL after the grace period). */
  stop(color: Color): Promise<void>;
  /** Current instances of a colour (empty when stopped). */
  instances(color: Color): Instance[];
  /**
   * After a daemon restart: take over instances recorded in state that are still running
   * (pid alive and it is ours), kill and forget the rest. Returns the adopted instances;
   * the caller health-checks them and calls `start` again when none survive.
   */
  adopt(color: Color, recorded: Instance[]): Promise<Instance[]>;
  /** Whether a crashed instance of this colour is restarted (live and standby: yes). */
  setAutoRestart(color: Color, on: boolean): void;
  /** Stop all instance supervision (not the instances) — the daemon is shutting down. */
  detach(): Promise<void>;
  /** How an instance last exited, when the provider runs processes (to explain a failed release). */
  lastExit?(id: string): { code: number | null; signal: string | null } | null;
  /** The last lines an instance wrote, when the provider keeps its output. */
  logTail?(id: string, lines: number): Promise<string[]>;
  /**
   * Optional (instances on `cutover agent` hosts): false when nothing can reach the instance at all
   * (its agent's lease is gone). The controller counts it unhealthy and leaves it out of the route
   * table while its colour has another instance; absent: every instance is reachable.
   */
  reachable?(id: string): boolean;
  /** Optional (process provider): where the instance's output goes. */
  logPath?(id: string): string;
  /**
   * Optional (the process provider has it; static targets cannot run twice): set the colour's
   * running instances aside, still running and restarted after a crash, so that a new release
   * starts on the colour beside them. `instances(color)` is then empty until `start`.
   * Returns the held instances.
   */
  hold?(color: Color): Promise<Instance[]>;
  /** Optional: the held instances of a colour ([] when none). */
  held?(color: Color): Instance[];
  /** Optional: stop the colour's held instances (the new release replaced them). */
  stopHeld?(color: Color): Promise<void>;
  /** Optional: stop the colour's current instances and make the held ones current again (a failed deploy). */
  restoreHeld?(color: Color): Promise<Instance[]>;
}

/** A provider that can keep a colour's instances warm while a release starts beside them. */
export type HoldingProvider = EnvironmentProvider & Required<Pick<EnvironmentProvider, 'hold' | 'held' | 'stopHeld' | 'restoreHeld'>>;

export function canHold(p: EnvironmentProvider): p is HoldingProvider {
  return typeof p.hold === 'function' && typeof p.held === 'function' && typeof p.stopHeld === 'function' && typeof p.restoreHeld === 'function';
}
