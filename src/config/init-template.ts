/** The commented starter written by `cutover init`. It must always load cleanly (tested). */

export const INIT_TEMPLATE = `# Cutover configuration. Durations: 500ms, 30s, 5m, 1h. Docs: README.md
app: shop

router:
  listen: 127.0.0.1:8080      # live traffic
  preview: 127.0.0.1:8081     # candidate environment, for gates and testers (keep it internal)
  drainTimeout: 30s           # in-flight requests on the old colour get this long to finish
  # connectTimeout: 5s        # upstream connect timeout (then 502)
  # responseTimeout: 60s      # time to the upstream's response headers (then 504)

admin:
  listen: 127.0.0.1:8900      # admin API, CLI and dashboard (bearer token required)

stateDir: .cutover            # state database, admin token, instance logs

environments:
  provider: process
  process:
    command: node server.js   # run in the release directory (cutover deploy VERSION --path DIR)
    instances: 2
    env: {}                   # extra environment; PORT, CUTOVER_COLOR, CUTOVER_VERSION, CUTOVER_INSTANCE are set
    startTimeout: 30s         # time for every instance to pass its health check
    # stopTimeout: 10s        # SIGTERM grace before SIGKILL
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

gates: []                     # pre-switch checks against the preview listener
analysis: {}                  # post-switch judgement and automatic rollback

standby:
  keepFor: 30m                # the old colour stays warm for instant rollback, then is retired
`;
