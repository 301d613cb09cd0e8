/**
 * The HAProxy configuration Cutover writes for `router.engine: haproxy`.
 *
 * Layout: two frontends (`live`, `preview`) and one backend per (listener, colour) —
 * `live_blue`, `live_green`, `preview_blue`, `preview_green` — so that HAProxy's own counters
 * are already per listener and colour, and a drain of the old live colour never waits for
 * preview traffic. Each frontend picks its backend per request from one map file
 * (`use_backend %[str(live),map(routes.map)]`): a switch is one `set map` on the runtime API,
 * applied to the next request of every connection, while requests in flight finish on the backend
 * they started on (DESIGN promises 1 and 3).
 *
 * The file always mirrors the current route table (targets, map, server states in the state file),
 * so a reload or a restart of HAProxy for any reason serves the same live colour.
 *
 * Owns: rendering text. Must never: perform I/O, or emit a setting the runtime API cannot change
 * later without a reload (everything that moves traffic lives in the map and server states).
 */
import type { Color } from '../../environments/types.ts';
import type { ColorRoute, RouteTable } from '../../router/route-table.ts';

export type BackendName = `${'live' | 'preview'}_${Color}`;
export const BACKENDS: readonly BackendName[] = ['live_blue', 'live_green', 'preview_blue', 'preview_green'];
/** Backends that answer when a listener has no route (before the first release, no candidate). */
export const NO_ROUTE_BACKEND = { live: 'none_live', preview: 'none_preview' } as const;
/** The ring the request log goes into; Cutover reads it with `show events <ring> -w`. */
export const REQUEST_RING = 'cutover_requests';
/** Bytes of request log kept in memory by HAProxy (a reader that falls behind loses the oldest). */
export const REQUEST_RING_BYTES = 4 * 1024 * 1024; // 4 MiB
/**
 * One request per line: backend, server, status, termination state, total active time (whole
 * milliseconds: HAProxy 2.6 keeps no finer request timer), method, the time to the response
 * head (%Tr: a WebSocket's latency is its handshake, as the builtin router counts it, not its life)
 * and the line's weight: the N of the 1-in-N sampling this request was logged under (`-`: not
 * sampled, 1).
 */
export const REQUEST_LOG_FORMAT = '%b %s %ST %ts %Ta %HM %Tr %[var(txn.cutover_w)]';
/** Variable holding the sampling N of the request being answered (set from the map, per response). */
const WEIGHT_VAR = 'txn.cutover_w';
/** Map keys of each listener's sampling N (1 = every request logged). */
export const SAMPLE_KEY = { live: 'sample_live', preview: 'sample_preview' } as const;
export interface SampleRates { live: number; preview: number }
export const EVERY_REQUEST: SampleRates = Object.freeze({ live: 1, preview: 1 });

export interface HAProxyFiles {
  /** Directory of every file below (stateDir/haproxy). */
  dir: string;
  config: string;
  map: string;
  stateFile: string;
  /** Admin-level stats socket (runtime API). */
  socket: string;
  /** Master CLI socket (reload, worker list). */
  masterSocket: string;
  pidFile: string;
  /** Certificate and key concatenated (HAProxy reads one PEM), when router.tls is set. */
  tlsPem: string | null;
}

export interface HAProxySettings {
  listen: { host: string; port: number };
  preview: { host: string; port: number } | null;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
  headersTimeoutMs: number;
  clientKeepAliveMs: number;
  maxHeaderBytes: number;
  maxHeaderCount: number;
  maxUrlBytes: number;
  maxBodyBytes: number;
  trustedProxies: readonly string[];
  /** Worker threads of HAProxy (`nbthread`). */
  threads: number;
  /**
   * Answers below 500 logged 1 in N into the request ring (`auto`: N follows the request rate,
   * about AUTO_SAMPLE_LINES_PER_S lines a second; 1 = every request). 5xx, HAProxy's own errors
   * and requests with no answer are always logged.
   */
  logSample: number | 'auto';
  maxConnections: number;
}

/**
 * Options every server added at run time gets. HAProxy 2.6 gives a dynamic server (`add server`)
 * none of a config server's idle-connection defaults: without these, under concurrent keep-alive
 * load it opened a new upstream connection per request (measured: 0 reused of 17,828, about 3×
 * the CPU per request). These are the config-file defaults (unlimited idle connections, purged
 * after 5 s).
 */
export const DYNAMIC_SERVER_OPTIONS = 'pool-max-conn -1 pool-purge-delay 5s';

/**
 * Servers of the live backends: passive ejection inside HAProxy. A connection error to a server
 * marks it down at once (`observe layer4`, `error-limit 1`, `on-error mark-down`), so the retry
 * goes to another server, and, when none of the colour is left, to the standby's servers (the
 * backend's `backup` servers) instead of answering 503 — the moments before Cutover's health
 * checker has seen the instances die and the controller has failed over. A TCP check every 2 s
 * (250 ms while down, one success to come back) brings it back; Cutover's verdicts still rule
 * (`state maint` is never overridden by a check). `observe` needs `check` to be on.
 */
export const LIVE_SERVER_CHECK = 'check observe layer4 error-limit 1 on-error mark-down inter 2s fastinter 250ms downinter 250ms rise 1 fall 2';
/**
 * Connection retries (each to another server, `option redispatch 1`): enough to pass every dead
 * server of a colour of up to this many instances and reach a backup.
 */
export const CONNECT_RETRIES = 3;

/** Whether `backend` is a live backend (its servers get LIVE_SERVER_CHECK and may have backups). */
export function isLiveBackend(backend: BackendName): boolean {
  return backend.startsWith('live_');
}

/** Server line options of a server in `backend` (`backup`: the standby's server in a live backend). */
export function serverOptions(backend: BackendName, backup: boolean): string {
  if (!isLiveBackend(backend)) return '';
  return ` ${LIVE_SERVER_CHECK}${backup ? ' backup' : ''}`;
}

/** Server line options every server gets, in the config file and in `add server`. */
export function serverArgs(host: string, port: number): string {
  return `${addr(host)}:${port}`;
}

function addr(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function bindAddr(a: { host: string; port: number }): string {
  return `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}

/** The map file: which backend each frontend uses, and each listener's log sampling. */
export function renderMap(table: RouteTable, sample: SampleRates = EVERY_REQUEST): string {
  return `live ${backendOf('live', table.live)}\npreview ${backendOf('preview', table.preview)}\n${SAMPLE_KEY.live} ${sample.live}\n${SAMPLE_KEY.preview} ${sample.preview}\n`;
}

export function backendOf(listener: 'live' | 'preview', route: ColorRoute | null): string {
  return route === null ? NO_ROUTE_BACKEND[listener] : `${listener}_${route.color}`;
}

/** Targets of a backend in a table (a backend's colour keeps its servers whichever listener uses it). */
export function targetsOf(table: RouteTable, color: Color, known: Partial<Record<Color, ColorRoute['targets']>>): ColorRoute['targets'] {
  for (const r of [table.live, table.preview]) if (r !== null && r.color === color) return r.targets;
  return known[color] ?? [];
}

function durationS(ms: number): string {
  return `${Math.max(1, Math.round(ms))}ms`;
}

/**
 * The whole configuration for `table`. `targets` gives each colour's servers (both listeners'
 * backends of a colour hold the same servers); `down` lists instance ids that start in
 * maintenance; `backups[c]`: the servers `live_<c>` falls back to (the standby's), if any.
 */
export function renderConfig(files: HAProxyFiles, s: HAProxySettings, targets: Record<Color, ColorRoute['targets']>, down: ReadonlySet<string>, backups: Record<Color, ColorRoute['targets']> = { blue: [], green: [] }): string {
  const bufsize = Math.max(16_384, nextPow2(s.maxHeaderBytes + 1_024));
  const trusted = s.trustedProxies.length > 0 ? s.trustedProxies.join(' ') : null;
  const lines: string[] = [
    '# Written by Cutover (router.engine: haproxy). Do not edit: Cutover rewrites it on every change',
    '# of the route table and drives the running HAProxy through its runtime API.',
    'global',
    `  nbthread ${s.threads}`,
    `  maxconn ${s.maxConnections}`,
    `  pidfile ${files.pidFile}`,
    `  stats socket ${files.socket} mode 600 level admin expose-fd listeners`,
    '  stats timeout 1h',
    `  server-state-file ${files.stateFile}`,
    `  tune.bufsize ${bufsize}`,
    '  tune.maxrewrite 1024',
    `  tune.http.maxhdr ${s.maxHeaderCount}`,
    '',
    `ring ${REQUEST_RING}`,
    '  format raw',
    '  maxlen 512',
    `  size ${REQUEST_RING_BYTES}`,
    '',
    'defaults',
    '  mode http',
    '  load-server-state-from-file global',
    `  timeout connect ${durationS(s.connectTimeoutMs)}`,
    `  timeout server ${durationS(s.responseTimeoutMs)}`,
    `  timeout client ${durationS(Math.max(s.clientKeepAliveMs, s.headersTimeoutMs))}`,
    `  timeout http-request ${durationS(s.headersTimeoutMs)}`,
    `  timeout http-keep-alive ${durationS(s.clientKeepAliveMs)}`,
    '  timeout tunnel 1h',
    '  option http-keep-alive',
    // Soft-stop (reload): idle client connections of the old process stay open until their next
    // answer, instead of being closed while a client may be sending on them (bench: 87 failed of
    // 20 plain reloads, 0 with this option).
    '  option idle-close-on-response',
    '  http-reuse safe',
    `  retries ${CONNECT_RETRIES}`,
    '  option redispatch 1',
    '  balance leastconn',
    '',
  ];
  for (const [name, a] of [['live', s.listen], ['preview', s.preview]] as const) {
    if (a === null) continue;
    const tls = name === 'live' && files.tlsPem !== null ? ` ssl crt ${files.tlsPem} alpn http/1.1` : '';
    lines.push(
      `frontend ${name}`,
      `  bind ${bindAddr(a)}${tls}`,
      `  log ring@${REQUEST_RING} local0 info`,
      `  log-format "${REQUEST_LOG_FORMAT}"`,
      '  option dontlognull',
      // Sampling before the line is built (a logger's own `sample` would format every line and drop
      // most): an answer from the server below 500 is logged 1 in N, N read from the map per answer
      // so that the runtime API changes it (`set map … sample_live N`). HAProxy's own answers
      // (502/503/504) and requests with no answer never pass here: always logged.
      `  http-response set-var(${WEIGHT_VAR}) str(${SAMPLE_KEY[name]}),map(${files.map},1) if { status lt 500 }`,
      `  http-response set-log-level silent if { var(${WEIGHT_VAR}) -m int gt 1 } { rand,mod(${WEIGHT_VAR}) gt 0 }`,
      ...(trusted ? [`  acl trusted src ${trusted}`] : ['  acl trusted always_false']),
      `  http-request return status 414 content-type text/plain string "414 URI Too Long: request target too long" if { url,length gt ${s.maxUrlBytes} }`,
      ...(s.maxBodyBytes > 0 ? [`  http-request return status 413 content-type text/plain string "413 Content Too Large: request body too large" if { req.hdr_val(content-length) gt ${s.maxBodyBytes} }`] : []),
      // What an untrusted client says about itself never reaches the application (README "Security").
      '  http-request del-header forwarded unless trusted',
      '  http-request del-header x-real-ip unless trusted',
      '  http-request del-header x-forwarded-for unless trusted',
      `  http-request set-header x-forwarded-proto ${tls ? 'https' : 'http'} unless trusted`,
      '  http-request set-header x-forwarded-host %[req.hdr(host)] unless trusted',
      '  option forwardfor',
      `  use_backend %[str(${name}),map(${files.map},${NO_ROUTE_BACKEND[name]})]`,
      '',
    );
  }
  for (const [name, text] of [[NO_ROUTE_BACKEND.live, 'no release is live yet'], [NO_ROUTE_BACKEND.preview, 'no release is in preview']] as const) {
    lines.push(`backend ${name}`, `  http-request return status 503 content-type text/plain string "503 Service Unavailable: ${text}"`, '');
  }
  for (const b of BACKENDS) {
    const color = b.endsWith('blue') ? 'blue' : 'green';
    lines.push(`backend ${b}`, `  errorfile 503 ${files.dir}/503-${color}.http`);
    // A request in flight on an instance that dies (reset, or the connection closed with no answer)
    // is sent again to another server, like the builtin router does, but only for methods that are
    // safe to repeat: a POST that may have run is never sent twice.
    lines.push('  retry-on conn-failure empty-response', '  http-request disable-l7-retry unless METH_GET || METH_HEAD || METH_OPTIONS');
    for (const t of targets[color]) {
      lines.push(`  server ${t.id} ${serverArgs(t.host, t.port)}${serverOptions(b, false)}${down.has(t.id) ? ' disabled' : ''}`);
    }
    if (isLiveBackend(b)) {
      for (const t of backups[color]) lines.push(`  server ${t.id} ${serverArgs(t.host, t.port)}${serverOptions(b, true)}${down.has(t.id) ? ' disabled' : ''}`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

/** The 503 HAProxy answers when a colour has no server in rotation (same text as the builtin router). */
export function noHealthyErrorFile(color: Color): string {
  const body = `503 Service Unavailable: no healthy instance of ${color}\n`;
  return `HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncache-control: no-cache\r\n\r\n${body}`;
}

function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}
