/**
 * Field types shared by every part of the cutover.yaml schema (config/, gates/, analysis/).
 * A leaf module: it imports nothing from the schema, so module schemas can use these without an
 * import cycle through config/schema.ts.
 */
import { z } from 'zod';
import { parseDuration } from '../lib/duration.ts';
import { parseSize } from '../lib/size.ts';

/** A duration like "500ms", "30s", "5m" → milliseconds. */
export const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = typeof v === 'number' ? v : parseDuration(v);
  if (ms === null || !Number.isFinite(ms) || ms < 0) {
    ctx.addIssue({ code: 'custom', message: `expected a duration like "500ms", "30s" or "5m", got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return ms;
});

/** A share written "0.1%" or as a fraction (0.001) → a fraction from 0 to 1. */
export const share = z.union([z.string(), z.number()]).transform((v, ctx) => {
  let n: number;
  if (typeof v === 'number') n = v;
  else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(v);
    n = m ? Number(m[1]) / 100 : Number.NaN;
  }
  if (!Number.isFinite(n) || n < 0 || n > 1) {
    ctx.addIssue({ code: 'custom', message: `expected a share like "1%", "0.1%" or a fraction from 0 to 1, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return n;
});

/** An URL path such as "/version" or "/search?q=x". */
export const urlPath = z.string().startsWith('/', 'expected a path starting with "/"');

/** A byte size like "16kb", "10mb" or a number of bytes → bytes (binary units: 1kb = 1024). */
export const byteSize = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const n = typeof v === 'number' ? v : parseSize(v);
  if (n === null || !Number.isSafeInteger(n) || n < 0) {
    ctx.addIssue({ code: 'custom', message: `expected a size like "16kb", "10mb" or a number of bytes, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return n;
});
