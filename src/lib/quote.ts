/**
 * Quoting what a caller sent inside an error message: at most `max` characters, so that a 900 KB
 * version string or path is never echoed back whole (into an answer, a log line or an event).
 * Owns nothing else; must never be used to hide a secret (it shortens, it does not redact).
 */

/** Characters of a caller's value an error message shows: 64. */
export const QUOTE_MAX_CHARS = 64;

/** The value itself when at most `max` characters, else its start and `… (900000 characters)`. */
export function shorten(value: string, max = QUOTE_MAX_CHARS): string {
  return value.length <= max ? value : `${value.slice(0, max)}… (${value.length} characters)`;
}

/** `"abc"`, or `"abcd…" (900000 characters)` when longer than `max`. */
export function quote(value: string, max = QUOTE_MAX_CHARS): string {
  if (value.length <= max) return JSON.stringify(value);
  return `${JSON.stringify(value.slice(0, max))}… (${value.length} characters)`;
}
