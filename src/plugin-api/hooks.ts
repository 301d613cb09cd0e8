/**
 * The seams of the deployment pipeline. Gates, analysis and migrations plug in here by
 * phase name; the pipeline owns ordering, recording and traffic, a hook owns only its check.
 * A hook never moves traffic: it returns a verdict and the controller acts on it.
 */
import type { Color, Release } from '../environments/types.ts';
import type { DeploymentRecord, EventInput } from '../store/types.ts';

export interface PhaseContext {
  readonly deployment: DeploymentRecord;
  readonly release: Release;
  /** Colour receiving the release. */
  readonly color: Color;
  /** What is live now (before the switch) or was live (after it); null for the first release. */
  readonly previous: { color: Color; version: string; path: string | null } | null;
  /** Base URLs of the router's listeners, e.g. http://127.0.0.1:8081. */
  readonly previewUrl: string | null;
  readonly liveUrl: string;
  /** Aborted when the deployment is aborted or superseded. */
  readonly signal: AbortSignal;
  /** Record an event for this deployment (gate results, verdicts); returns when durable. */
  record(event: Omit<EventInput, 'deployment' | 'actor'> & { actor?: string }): void;
  /**
   * Hold the deployment for an operator (status `awaiting-promotion`, a `promote.waiting` event with
   * `reason`): resolves on `cutover promote`, rejects on abort or rollback. Used by analysis `pause`.
   */
  awaitPromotion(reason: string): Promise<{ actor: string; force: boolean }>;
}

/** What a checking phase concludes. `summary` is one human line; `data` the measured values. */
export interface PhaseVerdict {
  outcome: 'passed' | 'failed' | 'skipped';
  summary: string;
  data?: Record<string, unknown>;
}

export interface SwitchStep {
  /** 1-based; `of` counts the final full switch too. */
  index: number;
  of: number;
  /** Share of live traffic on the candidate during this step, 0..1. */
  share: number;
  /** Epoch ms the step's share took effect. */
  startedAt: number;
  durationMs: number;
}

export interface PipelineHooks {
  /** After health, before gates: lint, compatibility run, apply expand migrations. */
  migrate?(ctx: PhaseContext): Promise<PhaseVerdict>;
  /** Pre-switch gates against the preview listener. */
  gates?(ctx: PhaseContext): Promise<PhaseVerdict>;
  /** Right after the switch, against the live listener (post-switch smoke). Failure rolls back. */
  verify?(ctx: PhaseContext): Promise<PhaseVerdict>;
  /**
   * One step of a gradual switch (`switch.steps`): wait `step.durationMs` while judging the
   * candidate's share of live traffic against the old colour's, at the same time. Failure returns
   * the share to 0 % at once and ends the deployment as rolled back.
   */
  step?(ctx: PhaseContext, step: SwitchStep): Promise<PhaseVerdict>;
  /** Post-switch bake: judge the new live colour against the old one's baseline. Failure rolls back. */
  analysis?(ctx: PhaseContext): Promise<PhaseVerdict>;
  /**
   * Before a deploy, and before a rollback someone asked for: why this release cannot serve the
   * database as it is (e.g. it lacks an applied contract migration); empty when it can. Must be
   * synchronous and cheap (cached state); a refusal is overridden only by `force` (recorded).
   */
  schemaProblems?(release: { version: string | null; path: string | null }): string[];
  /** After the old colour is retired (contract migrations become eligible). */
  retired?(info: { color: Color; version: string | null }): Promise<void>;
}
