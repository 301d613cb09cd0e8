/**
 * undici, loaded on first use. Importing it costs a process about 28 MB of RSS (it loads
 * node:http2 eagerly, and its own fetch, WebSocket, cache and mock modules), so the parts of the
 * daemon that need it only now and then (webhooks, gates, warm-up) load it here when they send
 * their first request, not at start. Type-only imports of undici cost nothing at run time.
 *
 * @example
 *   const { request } = await loadUndici();
 */
export type Undici = typeof import('undici');

let loading: Promise<Undici> | null = null;

export function loadUndici(): Promise<Undici> {
  loading ??= import('undici');
  return loading;
}
