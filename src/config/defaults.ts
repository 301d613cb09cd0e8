/** Defaults for cutover.yaml, as named constants with their units. */

export const DEFAULT_CONFIG_FILE = 'cutover.yaml';
export const DEFAULT_LISTEN = '127.0.0.1:8080';
export const DEFAULT_PREVIEW = '127.0.0.1:8081';
export const DEFAULT_ADMIN_LISTEN = '127.0.0.1:8900';
export const DEFAULT_STATE_DIR = '.cutover';
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000; // 30 seconds, as kamal-proxy
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000; // 5 seconds
export const DEFAULT_RESPONSE_TIMEOUT_MS = 60_000; // 60 seconds to the first response byte
export const DEFAULT_INSTANCES = 2;
export const DEFAULT_START_TIMEOUT_MS = 30_000; // 30 seconds to become healthy
export const DEFAULT_STOP_TIMEOUT_MS = 10_000; // SIGTERM grace before SIGKILL
export const DEFAULT_HEALTH_PATH = '/health';
export const DEFAULT_HEALTH_INTERVAL_MS = 1_000; // 1 second
export const DEFAULT_HEALTH_TIMEOUT_MS = 2_000; // 2 seconds
export const DEFAULT_HEALTHY_THRESHOLD = 1; // passes before an instance takes traffic
export const DEFAULT_UNHEALTHY_THRESHOLD = 2; // failures before it stops taking traffic
export const DEFAULT_STANDBY_KEEP_FOR_MS = 30 * 60_000; // 30 minutes
// Router limits for hostile or broken clients (issue #6).
export const DEFAULT_MAX_HEADER_SIZE_BYTES = 16 * 1024; // 16 KiB request (and upstream response) head, Node's default; over it: 431 / 502
export const DEFAULT_MAX_HEADER_COUNT = 100; // header lines per request, as Apache's LimitRequestFields; over it: 431
export const DEFAULT_MAX_URL_LENGTH_BYTES = 8 * 1024; // 8 KiB request target; over it: 414
export const DEFAULT_MAX_BODY_SIZE_BYTES = 10 * 1024 * 1024; // 10 MiB request body, streamed and counted; over it: 413 (0 = no limit)
export const DEFAULT_HEADERS_TIMEOUT_MS = 30_000; // 30 seconds to send the whole request head; then 408
export const DEFAULT_REQUEST_TIMEOUT_MS = 5 * 60_000; // 5 minutes to send the whole request (head and body); then 408
// Data-plane engines (issue #12).
export const DEFAULT_HAPROXY_BINARY = 'haproxy'; // found on PATH (Debian: /usr/sbin/haproxy)
export const DEFAULT_HAPROXY_MAX_CONNECTIONS = 4_096; // HAProxy `maxconn` (global)
export const DEFAULT_ACME_RENEW_BEFORE_MS = 30 * 24 * 3_600_000; // 30 days before expiry (Let's Encrypt certificates last 90)

/** Name of the cookie the router sets to keep a visitor on its colour during a gradual switch. */
export const DEFAULT_VISITOR_COOKIE = 'cutover_visitor';
/** Request header and cookie that ask for the preview on the live listener (router.previewAccess). */
export const DEFAULT_PREVIEW_HEADER = 'x-cutover-preview';
export const DEFAULT_PREVIEW_COOKIE = 'cutover_preview';
