/** The commented starter written by `cutover init`. It must always load cleanly (tested). */

export const INIT_TEMPLATE = `# Cutover configuration. Durations: 500ms, 30s, 5m, 1h. Docs: README.md
app: shop

router:
  listen: 127.0.0.1:8080      # live traffic
  preview: 127.0.0.1:8081     # candidate environment, for gates and testers (keep it internal)
  drainTimeout: 30s           # in-flight requests on the old colour get this long to finish
  # connectTimeout: 5s        # upstream connect timeout (then 502)
  # responseTimeout: 60s      # time to the upstream's response headers (then 504)
  # workers: auto             # data-plane threads on the same ports (default 1)
  # engine: haproxy           # let Cutover write, run and drive HAProxy instead (docs/engines.md)

admin:
  listen: 127.0.0.1:8900      # admin API, CLI and dashboard (bearer token required)

stateDir: .cutover            # state database, admin token, instance logs

environments:
  provider: process
  process:
    command: node server.js   # run in the release directory (cutover deploy VERSION --path DIR)
    # releaseDir: ./releases/{version}   # the release directory when deploy has no --path
    instances: 2
    env: {}                   # extra environment; PORT, CUTOVER_COLOR, CUTOVER_VERSION, CUTOVER_INSTANCE are set
    # inheritEnv: [DATABASE_URL]  # passed on from the daemon's environment besides PATH, HOME, LANG, LC_*, TZ…
    startTimeout: 30s         # time for every instance to pass its health check
    # stopTimeout: 10s        # SIGTERM grace before SIGKILL
    # hosts: [app-1, app-2]   # with fleet: run the instances on \`cutover agent --id app-1\` hosts instead (or: auto)
# or, for environments run by something else (VMs, containers, target groups):
#  provider: static
#  static:
#    blue:  [10.0.0.11:8080, 10.0.0.12:8080]
#    green: [10.0.0.21:8080, 10.0.0.22:8080]

health:
  path: /health
  interval: 1s
  timeout: 2s
  # healthyThreshold: 1       # passes before an instance takes traffic
  # unhealthyThreshold: 2     # failures before it stops taking traffic

# Pre-switch checks against the preview listener, in order; the first failure stops the release.
gates: []
#  - name: version
#    http: { path: /version, expect: { status: 200, json: { version: "{version}" } } }
#  - name: smoke-suite
#    command: npm run test:smoke   # env: CUTOVER_PREVIEW_URL, CUTOVER_LIVE_URL, CUTOVER_VERSION
#    timeout: 2m
#  - name: load
#    load: { duration: 10s, connections: 20, path: /, maxErrorRate: 0.1%, maxP99: 300ms }
#  - name: compare
#    compare: { paths: [/], requests: 200, maxErrorRateRatio: 2, maxP95Ratio: 1.5 }
#  - name: shadow             # real live requests copied to the candidate and to live again
#    mirror: { sample: 10%, methods: [GET, HEAD], minRequests: 200, duration: 5m, maxDiffRate: 1% }
#  - name: sessions           # sessions created on live must be accepted by the candidate
#    session: { login: { method: POST, path: /login }, check: { path: /me, expect: { status: 200 } } }
# warmup: { requests: 200, paths: [/] }   # sent to the candidate before the gates, not judged

# Gradual switch: live traffic moves in these shares (judged by analysis at every step) before the
# full switch. Absent: the instant switch.
# switch: { steps: [5%, 25%, 100%], stepDuration: 2m, stickiness: cookie }   # or header:X-User-Id, none

# Post-switch judgement against the old colour's baseline, with automatic rollback.
# Absent: no bake. Present (even {}): the defaults below.
# analysis:
#   window: 2m                 # bake time; deploy waits for it
#   interval: 10s
#   minRequests: 50            # per interval; fewer is inconclusive
#   maxErrorRate: { relative: 2, absolute: 1% }
#   maxLatency: { p95: { relative: 1.5, slack: 20ms }, p99: { relative: 2, slack: 50ms } }
#   failureLimit: 1
#   inconclusive: continue     # or rollback | pause
#   synthetic: { rate: 20, paths: [/] }   # traffic during the bake when real traffic is low

# Database migrations shared by both colours: expand before the switch, contract after retirement.
# database:
#   url: \${DATABASE_URL}
#   migrations: ./migrations   # in the release directory: 001_x.expand.sql, 002_y.contract.sql
#   engine: postgres           # or mysql
#   compatibility:             # old and new release on a shadow copy before expand runs
#     sample:                  # recorded live traffic (redacted), replayed there: writes too
#       exclude: [/payments]   # path prefixes never recorded
#       redactFields: [ssn]    # besides token, password, secret, key…
#     requests:                # sent on the shadow database only, never the real one
#       - { method: POST, path: /orders, body: { sku: probe }, status: 201 }

# Webhooks for events (HMAC-SHA256 signed, retried with backoff).
# notifications:
#   - url: https://hooks.example.com/cutover
#     events: [deployment.*, rollback, failover]
#     secret: \${CUTOVER_WEBHOOK_SECRET}

standby:
  keepFor: 30m                # the old colour stays warm for instant rollback, then is retired
  # keepWarmDuringDeploy: true  # the standby runs beside the next release until it has switched
                                # (room for 3 sets of instances); false on tight hosts
`;
