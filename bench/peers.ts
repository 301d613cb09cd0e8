/**
 * The servers around the router in the benchmark: the origin (a fast static nginx with a blue and
 * a green server block, and a slow Node.js backend behind `/slow`), and the peer proxies nginx
 * and HAProxy, each with a config file in a temp dir and run as our child on loopback.
 *
 * Owns: config text, start, reload (the peers' way of switching colour), stop.
 * Must never: use the system configs, pid files, log paths or services.
 */
import type { ChildProcess } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { forkChild, run, spawnChild, stopChild, waitForPort } from './procs.ts';

export const NGINX = '/usr/sbin/nginx';
export const HAPROXY = '/usr/sbin/haproxy';
const HERE = path.dirname(fileURLToPath(import.meta.url));

export type Colour = 'blue' | 'green';
export const other = (c: Colour): Colour => (c === 'blue' ? 'green' : 'blue');

/** Idle keep-alive on every listener: longer than any pause in the benchmark. */
const KEEPALIVE_S = 65;
/** nginx closes a keep-alive connection after 1000 requests by default; Node and HAProxy do not. */
const NGINX_KEEPALIVE_REQUESTS = 1_000_000;

function nginxCommon(dir: string, name: string): string {
  // Absolute temp paths: the Debian build's defaults live under /var/lib/nginx.
  return `worker_processes 1;
pid ${dir}/${name}.pid;
error_log ${dir}/${name}-error.log warn;
events { worker_connections 8192; }
`;
}

function nginxHttpCommon(dir: string, name: string): string {
  return `  access_log off;
  default_type text/plain;
  keepalive_timeout ${KEEPALIVE_S}s;
  keepalive_requests ${NGINX_KEEPALIVE_REQUESTS};
  client_body_temp_path ${dir}/${name}-body;
  proxy_temp_path ${dir}/${name}-proxy;
  fastcgi_temp_path ${dir}/${name}-fastcgi;
  uwsgi_temp_path ${dir}/${name}-uwsgi;
  scgi_temp_path ${dir}/${name}-scgi;
`;
}

/** One nginx instance (master + 1 worker) with its config in `dir`. */
export class Nginx {
  readonly name: string;
  readonly dir: string;
  readonly conf: string;
  readonly child: ChildProcess;

  private constructor(name: string, dir: string, conf: string, child: ChildProcess) {
    this.name = name;
    this.dir = dir;
    this.conf = conf;
    this.child = child;
  }

  static async start(dir: string, name: string, config: string, port: number): Promise<Nginx> {
    chmodSync(dir, 0o755); // nginx workers run as nobody when we are root
    const conf = path.join(dir, `${name}.conf`);
    writeFileSync(conf, config);
    const child = spawnChild(NGINX, ['-p', dir, '-c', conf, '-e', path.join(dir, `${name}-error.log`), '-g', 'daemon off;']);
    let err = '';
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    try {
      await waitForPort(port, child, `nginx (${name})`);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${err}`);
    }
    return new Nginx(name, dir, conf, child);
  }

  get pid(): number {
    return this.child.pid as number;
  }

  /** Writes the new config and runs `nginx -s reload` (new workers; old ones shut down gracefully). */
  async reload(config: string): Promise<void> {
    writeFileSync(this.conf, config);
    const r = await run(NGINX, ['-p', this.dir, '-c', this.conf, '-e', path.join(this.dir, `${this.name}-error.log`), '-s', 'reload']);
    if (r.code !== 0) throw new Error(`nginx -s reload failed (${r.code}): ${r.stderr}`);
  }

  stop(): Promise<void> {
    return stopChild(this.child);
  }
}

export interface OriginPorts { blue: number; green: number; slow: number }

/**
 * The origin: `/` answers "blue\n" or "green\n" from nginx itself (so the upstream is never the
 * bottleneck); `/slow?ms=N` is passed to a Node.js backend that answers after N ms with the
 * colour nginx tells it, so slow requests are in flight at every switch.
 */
export function originConfig(dir: string, p: OriginPorts): string {
  const block = (c: Colour, port: number) => `  server {
    listen 127.0.0.1:${port} reuseport backlog=4096;
    location / { return 200 "${c}\\n"; }
    location /slow {
      proxy_pass http://slow;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Bench-Colour ${c};
      proxy_read_timeout 60s;
    }
  }
`;
  return `${nginxCommon(dir, 'origin')}http {
${nginxHttpCommon(dir, 'origin')}  upstream slow { server 127.0.0.1:${p.slow}; keepalive 64; keepalive_requests ${NGINX_KEEPALIVE_REQUESTS}; }
${block('blue', p.blue)}${block('green', p.green)}}
`;
}

/**
 * nginx as a reverse proxy, set up as the issue asks: 1 worker, upstream keep-alive 64,
 * HTTP/1.1 to the upstream with the Connection header cleared.
 */
export function nginxProxyConfig(dir: string, listen: number, upstreamPort: number): string {
  return `${nginxCommon(dir, 'nginx-proxy')}http {
${nginxHttpCommon(dir, 'nginx-proxy')}  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 64; keepalive_requests ${NGINX_KEEPALIVE_REQUESTS}; keepalive_timeout ${KEEPALIVE_S}s; }
  server {
    listen 127.0.0.1:${listen} backlog=4096;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 60s;
    }
  }
}
`;
}

/**
 * HAProxy as a reverse proxy: 1 thread, `http-reuse always`, keep-alive both sides.
 * `idleCloseOnResponse`: on soft-stop (reload) keep idle client connections open until their
 * next request is answered, instead of closing them at once (HAProxy's default), which races
 * with a request the client is sending at that moment.
 */
export function haproxyConfig(dir: string, listen: number, upstreamPort: number, o: { idleCloseOnResponse?: boolean } = {}): string {
  return `global
  nbthread 1
  maxconn 4096
  pidfile ${dir}/haproxy.pid

defaults
  mode http
  timeout connect 5s
  timeout client 65s
  timeout server 65s
  timeout http-keep-alive ${KEEPALIVE_S}s
  timeout http-request 10s
  option http-keep-alive
  option forwardfor
  http-reuse always

frontend fe
  bind 127.0.0.1:${listen}
${o.idleCloseOnResponse ? '  option idle-close-on-response\n' : ''}  default_backend app

backend app
  server app 127.0.0.1:${upstreamPort}
`;
}

/**
 * HAProxy in master-worker mode (`-W`): a reload is SIGUSR2 to the master, which re-reads the
 * config, starts a new worker and soft-stops the old one.
 */
export class HAProxy {
  readonly cfg: string;
  readonly child: ChildProcess;

  private constructor(cfg: string, child: ChildProcess) {
    this.cfg = cfg;
    this.child = child;
  }

  static async start(dir: string, config: string, port: number): Promise<HAProxy> {
    const cfg = path.join(dir, 'haproxy.cfg');
    writeFileSync(cfg, config);
    const check = await run(HAPROXY, ['-c', '-q', '-f', cfg]);
    if (check.code !== 0) throw new Error(`haproxy config check failed: ${check.stderr}${check.stdout}`);
    const child = spawnChild(HAPROXY, ['-W', '-db', '-f', cfg]);
    let err = '';
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    try {
      await waitForPort(port, child, 'haproxy');
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${err}`);
    }
    return new HAProxy(cfg, child);
  }

  get pid(): number {
    return this.child.pid as number;
  }

  async reload(config: string): Promise<void> {
    writeFileSync(this.cfg, config);
    process.kill(this.pid, 'SIGUSR2');
  }

  stop(): Promise<void> {
    return stopChild(this.child);
  }
}

/** The Node.js backend behind the origin's `/slow`. */
export async function startSlowBackend(port: number): Promise<ChildProcess> {
  const child = forkChild(path.join(HERE, 'slow-server.ts'), [String(port)]);
  await waitForPort(port, child, 'slow backend');
  return child;
}
