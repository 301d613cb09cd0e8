/**
 * The `static` environment provider: blue and green are fixed target lists run by something
 * else (VMs, containers, a cloud target group). Owns only the bookkeeping of which version a
 * colour is said to run. Must never start, stop or signal anything: the targets are not ours.
 */
import { EventEmitter } from 'node:events';
import { parseAddress, type Address } from '../config/schema.ts';
import { CutoverError } from '../lib/errors.ts';
import { silentLogger, type Logger } from '../lib/logger.ts';
import type { Color, EnvironmentProvider, Instance, ProviderEvents, Release } from './types.ts';

/** A target as written in config (`"10.0.0.11:8080"`, `"[::1]:8080"`) or as the config loader parsed it. */
export type StaticTarget = string | Address;

export interface StaticProviderOptions {
  blue: StaticTarget[];
  green: StaticTarget[];
  logger?: Logger;
}

interface ColorRelease {
  version: string;
  startedAt: number;
}

export class StaticProvider extends EventEmitter<ProviderEvents> implements EnvironmentProvider {
  readonly kind = 'static' as const;
  private readonly targets: Record<Color, Address[]>;
  private readonly releases = new Map<Color, ColorRelease>();
  private readonly log: Logger;

  constructor(opts: StaticProviderOptions) {
    super();
    this.targets = { blue: opts.blue.map((t) => toAddress('blue', t)), green: opts.green.map((t) => toAddress('green', t)) };
    this.log = (opts.logger ?? silentLogger).child({ component: 'environments', provider: 'static' });
  }

  /** Records that the colour now runs `release`; the release itself is deployed by whoever runs the targets. */
  async start(color: Color, release: Release): Promise<Instance[]> {
    if (this.targets[color].length === 0) {
      throw new CutoverError('CUTOVER_ERR_PROVISION', `no static targets configured for ${color}`, { details: { color } });
    }
    this.releases.set(color, { version: release.version, startedAt: Date.now() });
    this.log.info({ color, version: release.version }, 'static targets assigned');
    const instances = this.instances(color);
    this.emit('instances-changed', color, instances);
    return instances;
  }

  /** Forgets the colour's version; the targets keep running (they are not ours) but get no traffic. */
  async stop(color: Color): Promise<void> {
    if (!this.releases.delete(color)) return;
    this.log.info({ color }, 'static targets released');
    this.emit('instances-changed', color, []);
  }

  instances(color: Color): Instance[] {
    const rel = this.releases.get(color);
    if (rel === undefined) return [];
    return this.targets[color].map((t, index) => ({
      id: `${color}-${index}`, color, index, version: rel.version,
      host: t.host, port: t.port, pid: null, path: null, startedAt: rel.startedAt,
    }));
  }

  /**
   * The configured list, under the recorded version. Nothing recorded means the colour was not
   * running anything, so nothing is adopted.
   */
  async adopt(color: Color, recorded: Instance[]): Promise<Instance[]> {
    const first = recorded[0];
    if (first === undefined || this.targets[color].length === 0) return [];
    this.releases.set(color, { version: first.version, startedAt: first.startedAt });
    const instances = this.instances(color);
    // The config may have changed while the daemon was down: report the new list.
    const same = instances.length === recorded.length && instances.every((i) => recorded.some((r) => r.id === i.id && r.host === i.host && r.port === i.port));
    if (!same) this.emit('instances-changed', color, instances);
    return instances;
  }

  /** No-op: static targets are restarted by whoever runs them. */
  setAutoRestart(_color: Color, _on: boolean): void {}

  /** No-op: nothing is supervised. */
  async detach(): Promise<void> {}

  /** Nothing is started from a path: it is recorded as given (or none). */
  checkRelease(p: string | null, _version?: string): string | null {
    return p;
  }
}

function toAddress(color: Color, t: StaticTarget): Address {
  if (typeof t !== 'string') return { host: t.host, port: t.port };
  const a = parseAddress(t);
  if (a === null || a.port === 0) {
    throw new CutoverError('CUTOVER_ERR_CONFIG', `environments.static.${color}: expected host:port like "10.0.0.11:8080", got ${JSON.stringify(t)}`);
  }
  return a;
}
