/**
 * The dashboard's static shell: `GET /` (index.html) and `GET /ui/*` (script, styles), served
 * from memory by the admin listener without the token. Every figure on the page comes from the
 * authenticated API; the page asks for the token once and keeps it in sessionStorage, never in a
 * URL. No CDN: everything it needs is in src/ui/assets.
 *
 * Owns: which files exist and their headers. Must never: embed data or the token in the shell,
 * or serve anything outside src/ui/assets.
 */
import type http from 'node:http';
import { readFileSync } from 'node:fs';

const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/ui/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/ui/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
  '/favicon.ico': { file: 'favicon.svg', type: 'image/svg+xml' },
  '/ui/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
};

/** Only our own script and styles; data only from this origin; no framing (clickjacking of the rollback button). */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

let cache: Map<string, { body: Buffer; type: string }> | null = null;

function load(): Map<string, { body: Buffer; type: string }> {
  if (cache) return cache;
  const dir = new URL('./assets/', import.meta.url);
  cache = new Map(Object.entries(ASSETS).map(([p, a]) => [p, { body: readFileSync(new URL(a.file, dir)), type: a.type }]));
  return cache;
}

/** ApiExtras.ui: answers GET/HEAD of the dashboard's files; false for anything else. */
export function serveDashboard(req: http.IncomingMessage, res: http.ServerResponse): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  const path = (req.url ?? '/').split('?')[0];
  const asset = load().get(path === '/index.html' ? '/' : path);
  if (!asset) return false;
  res.writeHead(200, {
    'content-type': asset.type,
    'content-length': asset.body.length,
    'content-security-policy': CSP,
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
  });
  res.end(req.method === 'HEAD' ? undefined : asset.body);
  return true;
}
