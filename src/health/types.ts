/** What the router needs to know about health: a read view plus passive-failure reports. */
export interface HealthView {
  /** True when the instance passed its last active checks and has not been ejected since. */
  isHealthy(instanceId: string): boolean;
  /** The router saw a connection failure to this instance: eject it until it passes again. */
  reportFailure(instanceId: string, reason: string): void;
}
