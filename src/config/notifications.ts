/**
 * The `notifications:` section of cutover.yaml: webhook targets that receive release events.
 * Validated with the rest of the config (config/schema.ts embeds this schema), then frozen.
 *
 * ```yaml
 * notifications:
 *   - url: https://hooks.example.com/cutover
 *     events: [deployment.*, rollback, failover]   # types or globs; default: the important ones
 *     secret: ${CUTOVER_WEBHOOK_SECRET}            # HMAC-SHA256 key; never logged
 * ```
 */
import { z } from 'zod';
import { duration } from './fields.ts';

/** Event types sent when a target names none: what a person on call wants to hear about. */
export const DEFAULT_NOTIFY_EVENTS = [
  'deployment.*', 'promote.waiting', 'switch', 'rollback', 'rollback.*', 'failover', 'live.down', 'abort', 'retire',
] as const;
export const DEFAULT_WEBHOOK_TIMEOUT_MS = 5_000; // 5 seconds per attempt
export const DEFAULT_WEBHOOK_RETRIES = 8; // attempts after the first: waits of about 1, 2, 4 … 128 s, up to ~4 min in all
export const DEFAULT_WEBHOOK_RETRY_DELAY_MS = 1_000; // first retry after 1 s, doubling each time
export const MAX_WEBHOOK_RETRY_DELAY_MS = 5 * 60_000; // never wait more than 5 minutes between attempts

export const notificationSchema = z.strictObject({
  /** Shown in logs and metrics instead of the URL (whose path is often a secret, as Slack's). */
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'expected a short name of letters, digits, ".", "_" or "-"').optional(),
  url: z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' }),
  /** Event types or globs (`deployment.*`, `*`). */
  events: z.array(z.string().regex(/^[a-z*][a-z0-9.*-]*$/, 'expected an event type like "rollback" or a glob like "deployment.*"')).min(1).default([...DEFAULT_NOTIFY_EVENTS]),
  /** Key of the X-Cutover-Signature HMAC. Without it deliveries are unsigned. */
  secret: z.string().min(16, 'use at least 16 characters (e.g. the output of `openssl rand -hex 32`)').optional(),
  /** Extra request headers (e.g. an Authorization the receiver wants). */
  headers: z.record(z.string().regex(/^[A-Za-z0-9-]+$/, 'expected a header name'), z.string()).default({}),
  timeout: duration.default(DEFAULT_WEBHOOK_TIMEOUT_MS),
  retries: z.int().min(0).max(20).default(DEFAULT_WEBHOOK_RETRIES),
  retryDelay: duration.default(DEFAULT_WEBHOOK_RETRY_DELAY_MS),
});

export const notificationsSchema = z.array(notificationSchema).default([]);

export type NotificationTarget = z.infer<typeof notificationSchema>;
export type NotificationTargetInput = z.input<typeof notificationSchema>;
