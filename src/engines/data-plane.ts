/**
 * Picks the data plane `router.engine` (and `router.workers`) ask for: the builtin router in this
 * thread, the builtin router on N worker threads, or HAProxy driven through its runtime API.
 * All three offer the same surface to the daemon, the controller and the plugins.
 *
 * Owns: the choice and the translation of config into engine options. Must never: hold traffic
 * logic of its own.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import type { LoadedConfig } from '../config/schema.ts';
import type { HealthView } from '../health/types.ts';
import type { DataPlaneEngine as RunnableDataPlane, RequestRecord } from '../router/data-plane.ts';
import { CLIENT_KEEP_ALIVE_TIMEOUT_MS, Router, type RouterOptions, type ServiceRouter } from '../router/router.ts';
import type { ListenerAddresses } from '../router/data-plane.ts';
import type { HostPort } from '../lib/address.ts';
import type { RouteTable } from '../router/route-table.ts';
import type { Logger } from '../lib/logger.ts';
import type { EventEmitter } from 'node:events';
import { HAProxyEngine, type EngineEvent } from './haproxy/engine.ts';
import type { HAProxySettings } from './haproxy/config.ts';
import { WorkerPool } from '../router/workers.ts';

/**
 * A data plane the daemon runs (router/data-plane.ts `DataPlaneEngine`: `DataPlane` plus start,
 * TLS reload and close): the builtin Router, the worker pool, or the HAProxy engine. Adds what an
 * external data plane needs: leaving it running, and reporting what happened to it.
 */
export interface DataPlaneEngine extends RunnableDataPlane {
  /** `keepRunning`: leave an external data plane (HAProxy) serving for the next daemon. */
  close(opts?: { keepRunning?: boolean }): Promise<void>;
  /** Where the engine reports what happened to it (HAProxy restarted…); the daemon records it. */
  onEvent?: (e: EngineEvent) => void;
}

export type { EngineEvent };

/**
 * What the daemon holds of its data plane: the builtin `Router` (every service, TLS listener,
 * ACME) or, for `router.engine: haproxy` / `router.workers` > 1, one of the engines here behind
 * the same calls (one service: the config refuses `services:` with them).
 */
export interface RouterHost {
  service(name: string): ServiceRouter;
  start(): Promise<void>;
  close(opts?: { keepRunning?: boolean }): Promise<void>;
  addresses(): ListenerAddresses;
  /** The route table in force (the first service's, with many). */
  table(): RouteTable;
  tlsAddress(): HostPort | null;
  reloadTls(): boolean;
  /** The engine behind it (HAProxy, worker threads); absent for the builtin router. */
  readonly engine?: HAProxyEngine | WorkerPool;
}

/** router.tls's certificate pair, when it has one (router.tls.listen/acme are the builtin router's). */
function tlsPair(t: { cert?: string; key?: string } | null | undefined): { cert: string; key: string } | null {
  return t?.cert !== undefined && t.key !== undefined ? { cert: t.cert, key: t.key } : null;
}

/** True when the config asks for a data plane other than the in-process builtin router. */
export function wantsEngine(config: Pick<LoadedConfig, 'router'>): boolean {
  return config.router.engine !== 'builtin' || workerCount(config.router.workers) > 1;
}

/** An engine as the daemon's RouterHost: its one service is the engine itself. */
export function engineHost(engine: HAProxyEngine | WorkerPool): RouterHost {
  return {
    engine,
    service: (name: string) => { engine.name = name; return engine; },
    start: () => engine.start(),
    close: (opts) => engine.close(opts),
    addresses: () => engine.addresses(),
    table: () => engine.table(),
    tlsAddress: () => null,
    reloadTls: () => engine.reloadTls(),
  };
}

export interface DataPlaneDeps {
  health: HealthView & Partial<Pick<EventEmitter, 'on' | 'off'>>;
  logger: Logger;
  onRequest: (r: RequestRecord) => void;
  /** Client connections per listener the daemon's descriptors allow (daemon/fd-limit.ts); split among worker threads. */
  maxConnections?: { live: number; preview: number };
}

/** The builtin router's options from the config. */
export function routerOptions(config: LoadedConfig, deps: DataPlaneDeps): RouterOptions {
  const r = config.router;
  return {
    listen: r.listen, preview: r.preview,
    drainTimeoutMs: r.drainTimeout, connectTimeoutMs: r.connectTimeout, responseTimeoutMs: r.responseTimeout,
    limits: {
      maxHeaderBytes: r.maxHeaderSize, maxHeaderCount: r.maxHeaderCount, maxUrlBytes: r.maxUrlLength,
      maxBodyBytes: r.maxBodySize, headersTimeoutMs: r.headersTimeout, requestTimeoutMs: r.requestTimeout,
    },
    trustedProxies: r.trustedProxies, tls: tlsPair(r.tls),
    previewAccess: r.previewAccess ? { ...r.previewAccess, secret: r.previewAccess.secret ?? null } : null,
    health: deps.health, logger: deps.logger, onRequest: deps.onRequest,
    ...(deps.maxConnections ? { maxConnections: deps.maxConnections } : {}),
  };
}

/** `router.workers` as a number (`auto`: one per CPU the process may use). */
export function workerCount(w: number | 'auto'): number {
  return w === 'auto' ? Math.max(1, availableParallelism()) : w;
}

export function createDataPlane(config: LoadedConfig, deps: DataPlaneDeps): HAProxyEngine | WorkerPool | Router {
  const r = config.router;
  if (r.engine === 'haproxy') {
    return new HAProxyEngine({
      stateDir: config.stateDir,
      binary: findBinary(r.haproxy.binary),
      manage: r.haproxy.manage,
      socket: r.haproxy.socket,
      drainTimeoutMs: r.drainTimeout,
      tls: tlsPair(r.tls),
      health: deps.health,
      logger: deps.logger,
      onRequest: deps.onRequest,
      settings: haproxySettings(config),
    });
  }
  const workers = workerCount(r.workers);
  if (workers > 1) {
    // One process, one descriptor limit: the threads share the budget.
    const m = deps.maxConnections;
    const share = m ? { maxConnections: { live: Math.max(1, Math.floor(m.live / workers)), preview: Math.max(1, Math.floor(m.preview / workers)) } } : {};
    return new WorkerPool({ ...routerOptions(config, deps), ...share, workers, health: deps.health });
  }
  return new Router(routerOptions(config, deps));
}

/** What the HAProxy configuration is rendered from (config.ts), from cutover.yaml's router keys. */
export function haproxySettings(config: Pick<LoadedConfig, 'router'>): HAProxySettings {
  const r = config.router;
  return {
    listen: r.listen, preview: r.preview,
    connectTimeoutMs: r.connectTimeout, responseTimeoutMs: r.responseTimeout,
    headersTimeoutMs: r.headersTimeout, clientKeepAliveMs: CLIENT_KEEP_ALIVE_TIMEOUT_MS,
    maxHeaderBytes: r.maxHeaderSize, maxHeaderCount: r.maxHeaderCount, maxUrlBytes: r.maxUrlLength, maxBodyBytes: r.maxBodySize,
    trustedProxies: r.trustedProxies, threads: r.haproxy.threads, logSample: r.haproxy.logSample, maxConnections: r.haproxy.maxConnections,
  };
}

/** A bare name is looked up on PATH, then in the sbin directories distributions put HAProxy in. */
export function findBinary(name: string): string {
  if (name.includes('/')) return name;
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const d of dirs) if (d !== '' && existsSync(path.join(d, name))) return path.join(d, name);
  return name;
}
