/**
 * The HAProxy engine under test (`router.engine: haproxy`), and its fair peer: a bare HAProxy
 * running the very configuration the engine writes (same renderer, same settings, the same 1-in-N
 * log sampling in its map), with nobody reading its request log or counters, so that "engine vs
 * bare HAProxy with the same settings" isolates what Cutover's driving costs (stats reading,
 * runtime API, the daemon) from what the settings cost.
 *
 * Owns: starting both. Must never: reach into the daemon other than through its admin API and
 * the files it writes (the HAProxy pid file).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../src/config/load.ts';
import { haproxySettings } from '../src/engines/data-plane.ts';
import { SAMPLE_KEY, noHealthyErrorFile, renderConfig, renderMap } from '../src/engines/haproxy/config.ts';
import { haproxyFiles } from '../src/engines/haproxy/engine.ts';
import { Daemon } from './cutover.ts';
import { HAProxy, type OriginPorts } from './peers.ts';
import { freePort } from './procs.ts';

export interface EngineDaemon {
  daemon: Daemon;
  /** The HAProxy master the daemon runs (its worker is the master's child). */
  haproxyPid: () => number;
  /** The 1-in-N log sampling the engine runs now, per listener (from the map file it keeps in step). */
  sample: () => { live: number; preview: number };
}

/**
 * `cutover up` with `router.engine: haproxy`, static provider on the origin; v1 on blue, v2 on
 * green (live). `logSample`: `router.haproxy.logSample` (default `auto`).
 */
export async function startEngineDaemon(dir: string, origin: OriginPorts, o: { logSample?: number } = {}): Promise<EngineDaemon> {
  mkdirSync(dir, { recursive: true });
  const daemon = await Daemon.start(dir, origin, { router: ['  engine: haproxy', ...(o.logSample ? [`  haproxy: { logSample: ${o.logSample} }`] : [])] });
  await daemon.deploy('v1');
  await daemon.deploy('v2');
  const pidFile = path.join(daemon.stateDir, 'haproxy', 'haproxy.pid');
  const mapFile = path.join(daemon.stateDir, 'haproxy', 'routes.map');
  const sample = () => {
    const text = readFileSync(mapFile, 'utf8');
    const n = (key: string) => Number(new RegExp(`^${key} (\\d+)$`, 'm').exec(text)?.[1] ?? 1);
    return { live: n(SAMPLE_KEY.live), preview: n(SAMPLE_KEY.preview) };
  };
  return { daemon, haproxyPid: () => Number(readFileSync(pidFile, 'utf8').trim().split('\n')[0]), sample };
}

/**
 * A bare HAProxy (our child, master-worker) with the engine's own configuration, live on
 * `upstream`, logging answers 1 in `sample` (the engine's N: what its map says).
 */
export async function startSameConfigHAProxy(dir: string, upstream: number, o: { sample: number }): Promise<{ haproxy: HAProxy; port: number }> {
  const port = await freePort();
  const preview = await freePort();
  const config = parseConfig(`router: { engine: haproxy, listen: 127.0.0.1:${port}, preview: 127.0.0.1:${preview} }\nenvironments: { provider: static, static: { blue: [127.0.0.1:${upstream}], green: [127.0.0.1:${upstream}] } }\n`, { file: 'bench.yaml', baseDir: dir });
  const files = haproxyFiles(dir, { tls: false });
  mkdirSync(files.dir, { recursive: true });
  const targets = [{ id: 'blue-0', host: '127.0.0.1', port: upstream }];
  for (const c of ['blue', 'green'] as const) writeFileSync(path.join(files.dir, `503-${c}.http`), noHealthyErrorFile(c));
  writeFileSync(files.map, renderMap({ revision: 1, live: { color: 'blue', version: 'v1', targets }, preview: null }, { live: o.sample, preview: o.sample }));
  const text = renderConfig(files, haproxySettings(config), { blue: targets, green: [] }, new Set());
  const haproxy = await HAProxy.start(files.dir, text, port);
  return { haproxy, port };
}
