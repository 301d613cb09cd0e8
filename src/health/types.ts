/** What the router needs to know about health: a read view plus passive-failure reports. */
export interface HealthView {
  /** True when the instance passed its last active checks and has not been ejected since. */
  isHealthy(instanceId: string): boolean;
  /** The router saw a connection failure to this instance: eject it until it passes again. */
  reportFailure(instanceId: string, reason: string): void;
}

export interface HealthEvents {
  /** An instance turned healthy or unhealthy; `reason` says why (the last check's error, an ejection). */
  change: [id: string, healthy: boolean, reason: string];
}

/** What the controller needs of health checking: the view, watching instances, and changes. */
export interface HealthMonitor extends HealthView {
  watch(target: { id: string; host: string; port: number }, opts?: { assumeHealthy?: boolean }): void;
  unwatch(id: string): void;
  markDown(id: string, reason: string): void;
  waitHealthy(ids: string[], timeoutMs: number, signal?: AbortSignal): Promise<void>;
  on<K extends keyof HealthEvents>(event: K, listener: (...args: HealthEvents[K]) => void): this;
}
