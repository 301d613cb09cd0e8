/**
 * Byte sizes as written in cutover.yaml ("512b", "16kb", "10mb", "1gb", or a plain number of
 * bytes) to a byte count. Units are binary (1kb = 1024 bytes), as in nginx's `client_max_body_size`.
 */

const UNIT_BYTES: Record<string, number> = { b: 1, kb: 1024, k: 1024, mb: 1024 ** 2, m: 1024 ** 2, gb: 1024 ** 3, g: 1024 ** 3 };
const SIZE = /^(\d+(?:\.\d+)?)\s*(b|kb|k|mb|m|gb|g)?$/i;

/** Returns bytes (a whole number), or null when the text is not a size. */
export function parseSize(text: string): number | null {
  const m = SIZE.exec(text.trim());
  if (!m) return null;
  const n = Number(m[1]) * UNIT_BYTES[(m[2] ?? 'b').toLowerCase()];
  return Number.isFinite(n) ? Math.floor(n) : null;
}

/** Human form of a byte count: 512 B, 16 KiB, 10 MiB. */
export function formatSize(bytes: number): string {
  for (const [unit, n] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (bytes >= n && bytes % (n / 1024) === 0) return `${Number((bytes / n).toFixed(2))} ${unit}`;
  }
  return `${bytes} B`;
}
