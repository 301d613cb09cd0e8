/**
 * Comparing three answers to one request, Diffy-style: the live answer the client got (primary),
 * the live colour's answer to a second copy (secondary) and the candidate's answer (candidate).
 * Every answer is flattened into fields (`status`, `headers.<name>`, `body.<path>` for JSON with
 * array elements folded into `[]`, else `body` by hash); per endpoint and field the aggregator
 * counts raw differences (primary ≠ candidate) and noise (primary ≠ secondary). The judgement of
 * those counts lives in the gate (gates/mirror-gate.ts); this module only counts.
 *
 * Owns: flattening, endpoint names, redaction of examples, counting. Must never: keep more than
 * one example per field, keep unbounded endpoints or fields, or keep a secret-looking value.
 */
import { createHash } from 'node:crypto';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';

/** Endpoints counted per mirroring run; the rest fall into `<METHOD> (other)`. */
export const MIRROR_MAX_ENDPOINTS = 200;
/** Fields counted per endpoint; the rest are counted under `body.(other)`. */
export const MIRROR_MAX_FIELDS = 256;
/** Characters of a value kept in an example. */
export const MIRROR_EXAMPLE_CHARS = 120;
/** Field or parameter names whose values never appear in examples. */
export const SECRET_NAME = /pass|secret|token|auth|cookie|session|sid$|key|sig|credential|otp|bearer/i;
const REDACTED = '[redacted]';

export interface Answer {
  status: number;
  /** Flat raw header pairs as received. */
  headers: readonly string[];
  body: Buffer;
}

export type Fields = Map<string, string>;

/** `GET /users/42/orders?x=1` → `GET /users/:id/orders`: ids in paths would make every request its own endpoint. */
export function endpointOf(method: string, path: string): string {
  const q = path.indexOf('?');
  const p = q === -1 ? path : path.slice(0, q);
  const segs = p.split('/').map((s) => (isIdSegment(s) ? ':id' : s));
  return `${method} ${segs.join('/') || '/'}`;
}

function isIdSegment(s: string): boolean {
  if (s === '') return false;
  if (/^\d+$/.test(s)) return true;
  if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s)) return true;
  if (s.length >= 16 && /^[0-9a-f]+$/i.test(s)) return true;
  return s.length >= 20 && /\d/.test(s) && /^[\w-]+$/.test(s);
}

/** The request line for an example, with secret-looking query values redacted. */
export function redactPath(path: string): string {
  const q = path.indexOf('?');
  if (q === -1) return path;
  const params = path.slice(q + 1).split('&').map((kv) => {
    const eq = kv.indexOf('=');
    const k = eq === -1 ? kv : kv.slice(0, eq);
    return eq !== -1 && SECRET_NAME.test(decodeSafe(k)) ? `${k}=${REDACTED}` : kv;
  });
  return `${path.slice(0, q)}?${params.join('&')}`;
}

function decodeSafe(s: string): string {
  try { return decodeURIComponent(s); } catch { return s; }
}

function header(raw: readonly string[], name: string): string | undefined {
  let out: string | undefined;
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === name) out = out === undefined ? raw[i + 1] : `${out}, ${raw[i + 1]}`;
  return out;
}

/** The body as sent on the wire, decoded when it is gzip/deflate/br; null when it cannot be. */
function decoded(a: Answer): Buffer | null {
  const enc = header(a.headers, 'content-encoding')?.trim().toLowerCase();
  if (enc === undefined || enc === '' || enc === 'identity') return a.body;
  try {
    if (enc === 'gzip' || enc === 'x-gzip') return gunzipSync(a.body);
    if (enc === 'deflate') return inflateSync(a.body);
    if (enc === 'br') return brotliDecompressSync(a.body);
  } catch { return null; }
  return null;
}

/** Flattens one answer into comparable fields. */
export function flatten(a: Answer, headers: readonly string[]): Fields {
  const out: Fields = new Map();
  out.set('status', String(a.status));
  for (const h of headers) {
    const v = header(a.headers, h);
    if (v !== undefined) out.set(`headers.${h}`, v);
  }
  const body = decoded(a);
  if (body === null) {
    out.set('body', `sha256:${createHash('sha256').update(a.body).digest('hex')}`);
    return out;
  }
  if (body.length === 0) return out;
  const type = header(a.headers, 'content-type') ?? '';
  if (/json/i.test(type) || body[0] === 0x7b /* { */ || body[0] === 0x5b /* [ */) {
    try {
      const lists = new Map<string, string[]>();
      walk(JSON.parse(body.toString('utf8')), 'body', lists);
      for (const [k, v] of lists) out.set(k, v.length === 1 ? v[0] : v.join(','));
      return out;
    } catch { /* not JSON after all: compared by hash */ }
  }
  out.set('body', `sha256:${createHash('sha256').update(body).digest('hex')}`);
  return out;
}

function walk(v: unknown, path: string, out: Map<string, string[]>): void {
  if (Array.isArray(v)) {
    if (v.length === 0) push(out, path, '[]');
    for (const x of v) walk(x, `${path}[]`, out);
    return;
  }
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v);
    if (keys.length === 0) push(out, path, '{}');
    for (const k of keys) walk((v as Record<string, unknown>)[k], `${path}.${k}`, out);
    return;
  }
  push(out, path, JSON.stringify(v) ?? 'undefined');
}

function push(out: Map<string, string[]>, k: string, v: string): void {
  const l = out.get(k);
  if (l === undefined) out.set(k, [v]);
  else l.push(v);
}

/** Whether a field is covered by one of the ignore paths (exact, or a prefix at a `.`/`[` boundary). */
export function ignored(field: string, ignore: readonly string[]): boolean {
  for (const p of ignore) {
    if (field === p) return true;
    if (field.startsWith(p) && (field[p.length] === '.' || field[p.length] === '[')) return true;
  }
  return false;
}

export interface FieldCounts {
  field: string;
  /** Samples where the candidate's value differed from the live answer's. */
  raw: number;
  /** Samples where the second live answer differed from the first (noise). */
  noise: number;
  /** One raw difference, values redacted when the field looks secret. */
  example?: { request: string; live: string | null; candidate: string | null };
}

export interface EndpointCounts {
  endpoint: string;
  /** Samples compared (all three answers received). */
  samples: number;
  fields: FieldCounts[];
}

/** A serialisable snapshot of one mirroring run: what the router reports to the gate. */
export interface MirrorReport {
  id: string;
  /** Live requests picked for mirroring. */
  sampled: number;
  /** Picked but not queued (queue full): never copied, counted. */
  dropped: number;
  /** Picked but not compared: a body above maxBodyBytes, or no candidate to send to. */
  skipped: number;
  /** Copies that failed to get an answer from the second live copy (not compared). */
  liveErrors: number;
  /** Copies the candidate did not answer (connection error, timeout): compared as status "error". */
  candidateErrors: number;
  /** Three-way comparisons done. */
  compared: number;
  /** Queued or in flight right now. */
  pending: number;
  endpoints: EndpointCounts[];
  /** Compared requests that carried credentials, and those live accepted but the candidate refused (401/403/419). */
  sessions: { compared: number; lost: number; examples: { request: string; live: number; candidate: number }[] };
}

/** "Who are you?" answers: the session was not recognised. 419: Laravel's expired session. */
export const AUTH_FAILURE_STATUSES: ReadonlySet<number> = new Set([401, 403, 419]);
/** Examples of lost sessions kept per run. */
export const SESSION_EXAMPLES = 3;

function example(field: string, v: string | undefined): string | null {
  if (v === undefined) return null;
  const last = field.split(/[.[\]]+/).filter(Boolean).at(-1) ?? field;
  if (SECRET_NAME.test(last)) return REDACTED;
  return v.length > MIRROR_EXAMPLE_CHARS ? `${v.slice(0, MIRROR_EXAMPLE_CHARS)}…` : v;
}

/** Per-endpoint, per-field counts of one mirroring run. */
export class DiffCounter {
  readonly #endpoints = new Map<string, { samples: number; fields: Map<string, FieldCounts> }>();
  readonly #headers: readonly string[];
  readonly #ignore: readonly string[];

  constructor(headers: readonly string[], ignore: readonly string[]) {
    this.#headers = headers;
    this.#ignore = ignore;
  }

  /** One three-way comparison. `candidate` null: the candidate did not answer. */
  add(method: string, path: string, primary: Answer, secondary: Answer, candidate: Answer | null): void {
    let name = endpointOf(method, path);
    if (!this.#endpoints.has(name) && this.#endpoints.size >= MIRROR_MAX_ENDPOINTS) name = `${method} (other)`;
    let ep = this.#endpoints.get(name);
    if (ep === undefined) {
      ep = { samples: 0, fields: new Map() };
      this.#endpoints.set(name, ep);
    }
    ep.samples++;
    const p = flatten(primary, this.#headers);
    const s = flatten(secondary, this.#headers);
    const c: Fields = candidate === null ? new Map([['status', 'error']]) : flatten(candidate, this.#headers);
    const keys = new Set([...p.keys(), ...s.keys(), ...c.keys()]);
    for (const k of keys) {
      if (ignored(k, this.#ignore)) continue;
      const pv = p.get(k);
      const rawDiff = pv !== c.get(k);
      const noiseDiff = pv !== s.get(k);
      if (!rawDiff && !noiseDiff) continue;
      let key = k;
      if (!ep.fields.has(key) && ep.fields.size >= MIRROR_MAX_FIELDS) key = 'body.(other)';
      let f = ep.fields.get(key);
      if (f === undefined) {
        f = { field: key, raw: 0, noise: 0 };
        ep.fields.set(key, f);
      }
      if (rawDiff) {
        f.raw++;
        f.example ??= { request: `${method} ${redactPath(path)}`, live: example(k, pv), candidate: example(k, c.get(k)) };
      }
      if (noiseDiff) f.noise++;
    }
  }

  endpoints(): EndpointCounts[] {
    return [...this.#endpoints].map(([endpoint, e]) => ({ endpoint, samples: e.samples, fields: [...e.fields.values()].map((f) => ({ ...f, ...(f.example ? { example: { ...f.example } } : {}) })) }));
  }
}
