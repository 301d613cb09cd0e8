/**
 * The `switch:` section of cutover.yaml: absent (or without `steps`) = the instant 0/100 switch;
 * with `steps`, live traffic moves to the candidate in those shares, `stepDuration` each, before
 * the full switch. Shares are of requests (visitors), never of instances.
 */
import { z } from 'zod';
import { duration, share } from './fields.ts';
import { DEFAULT_VISITOR_COOKIE } from './defaults.ts';

/**
 * How a visitor keeps its colour during a gradual switch:
 *   cookie: the router sets a random visitor id cookie and hashes it;
 *   header: the hash of a request header (e.g. X-User-Id); requests without it are split at random;
 *   none:   every request is split at random.
 */
export type Stickiness = { kind: 'cookie'; name: string } | { kind: 'header'; name: string } | { kind: 'none' };

export const DEFAULT_STEP_DURATION_MS = 2 * 60_000; // 2 minutes per step

/** `cookie` (router-set visitor cookie), `cookie:NAME`, `header:X-User-Id`, or `none`. */
export const stickiness = z.string().default('cookie').transform((v, ctx): Stickiness => {
  const t = v.trim();
  if (t === 'none') return { kind: 'none' };
  if (t === 'cookie') return { kind: 'cookie', name: DEFAULT_VISITOR_COOKIE };
  const m = /^(cookie|header):\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)$/.exec(t);
  if (m) return m[1] === 'cookie' ? { kind: 'cookie', name: m[2] } : { kind: 'header', name: m[2].toLowerCase() };
  ctx.addIssue({ code: 'custom', message: `expected "cookie", "cookie:NAME", "header:X-User-Id" or "none", got ${JSON.stringify(v)}` });
  return z.NEVER;
});

export const switchSchema = z.strictObject({
  steps: z.array(share).default([]),
  stepDuration: duration.default(DEFAULT_STEP_DURATION_MS),
  stickiness,
}).superRefine((s, ctx) => {
  s.steps.forEach((x, i) => {
    if (x <= 0) ctx.addIssue({ code: 'custom', path: ['steps', i], message: 'expected a share above 0, like "5%"' });
    if (i > 0 && x <= s.steps[i - 1]) ctx.addIssue({ code: 'custom', path: ['steps', i], message: 'expected steps in ascending order, like [5%, 25%, 100%]' });
  });
  if (s.steps.length > 0 && s.stepDuration < 1_000) ctx.addIssue({ code: 'custom', path: ['stepDuration'], message: 'expected at least 1s' });
}).transform((s) => ({
  ...s,
  // The final 100 % is the switch itself (persisted, with drain); steps are the shares before it.
  steps: s.steps.filter((x) => x < 1),
}));

export type SwitchConfig = z.infer<typeof switchSchema>;
