/**
 * How a plugin (gates, analysis, migrations, telemetry) is composed into the daemon: a factory
 * gets a `PluginContext` and returns pipeline hooks, a request observer, admin API extras and a
 * close function. Plugins import this folder, never daemon/, api/server.ts, the controller or
 * the Router class: they get read-only views, so "only the controller moves traffic" holds by type.
 */
import type http from 'node:http';
import type { LoadedConfig } from '../config/schema.ts';
import type { Logger } from '../lib/logger.ts';
import type { RequestRecord, RouterView } from '../router/data-plane.ts';
import type { ControllerView } from './controller-view.ts';
import type { PipelineHooks } from './hooks.ts';

/** A factory is called once per service (once without `services:`). */
export interface PluginContext {
  config: LoadedConfig;
  controller: ControllerView;
  /** The service's own view of the router (its table, stats, in-flight counts, addresses). */
  router: RouterView;
  logger: Logger;
  /** The service's name under `services:`; absent without it. */
  service?: string;
  /** False for every service but the first: process-wide things (Node.js process metrics) belong once. */
  primary?: boolean;
}

export interface Plugin {
  hooks?: PipelineHooks;
  extras?: ApiExtras;
  /** Called for every proxied request (metrics, analysis); must be cheap. */
  onRequest?: (r: RequestRecord) => void;
  close?: () => Promise<void>;
}

/** May be async, so that a plugin loads its heavy dependencies (SQL parsers, database drivers) only when configured. */
export type PluginFactory = (ctx: PluginContext) => Plugin | Promise<Plugin>;

/** What plugins add to the admin API. */
export interface ApiExtras {
  /** GET /metrics; returns the Prometheus text exposition. */
  metrics?: () => Promise<{ contentType: string; body: string }>;
  metricsPublic?: boolean;
  /** GET / and /ui/*: the dashboard (served without the token; it asks for it and keeps it out of URLs). */
  ui?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
  /** Extra authenticated routes under /api/v1 (drill, report, migrations…); return true when handled. */
  routes?: (ctx: RequestContext) => Promise<boolean>;
}

/** One authenticated admin API request, as extra routes see it. */
export interface RequestContext {
  /** The service the call addresses (`/api/v1/services/NAME/…`, `?service=NAME`, or the only one). */
  service?: string;
  req: http.IncomingMessage;
  res: http.ServerResponse;
  method: string;
  /** Path below /api/v1, e.g. `/drill`. */
  path: string;
  query: URLSearchParams;
  actor: string;
  source: string;
  body: () => Promise<unknown>;
  send: (status: number, value: unknown) => void;
}
