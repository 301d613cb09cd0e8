/**
 * Automatic certificates over ACME (RFC 8555) with HTTP-01 challenges answered by the router's
 * plain-HTTP listener. One certificate per host name, obtained with the `acme-client` library,
 * stored under `<stateDir>/acme/` (files 0600, directory 0700), installed into the
 * CertificateStore the TLS listener reads by SNI, and renewed well before it expires.
 *
 * Failure is never fatal: when the ACME server is unreachable or refuses, the certificate in
 * service stays, the failure is reported (`onEvent`, `status()`), and the attempt is retried
 * with backoff (1 minute doubling to 1 hour).
 *
 * Owns: the account key, the challenge tokens, the issue/renew schedule. Must never: take the TLS
 * listener down, put key material or the account key in logs, events or errors, or block the
 * daemon's start on the ACME server.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { Agent as HttpsAgent } from 'node:https';
import path from 'node:path';
import type { Logger } from '../lib/logger.ts';
import { silentLogger } from '../lib/logger.ts';
import type { CertificateInfo, CertificateStore } from './certificate-store.ts';

/** Renew when less than this is left (Let's Encrypt certificates last 90 days; certbot renews at 30). */
export const DEFAULT_RENEW_BEFORE_MS = 30 * 24 * 3_600_000; // 30 days
/** Scheduler tick upper bound: expiry is re-checked at least this often. */
export const ACME_CHECK_INTERVAL_MS = 3_600_000; // 1 hour
/** First retry after a failed order, doubling up to ACME_MAX_RETRY_MS. */
export const ACME_FIRST_RETRY_MS = 60_000; // 1 minute
export const ACME_MAX_RETRY_MS = 3_600_000; // 1 hour
/** One HTTP request to the ACME server. */
export const ACME_REQUEST_TIMEOUT_MS = 30_000; // 30 seconds
/** Where HTTP-01 challenge requests arrive (RFC 8555 §8.3). */
export const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

export interface AcmeOptions {
  directory: string;
  email?: string;
  /** Extra CA certificates (PEM) trusted for the ACME server (private ACME servers, Pebble). */
  caFile?: string;
  renewBeforeMs?: number;
  /** Host names to hold a certificate for. */
  hosts: readonly string[];
  stateDir: string;
  store: CertificateStore;
  logger?: Logger;
  /** A reportable outcome: issued, renewed or failed (the daemon records it as an event). */
  onEvent?: (e: AcmeEvent) => void;
  /** Clock, for tests of renewal. */
  now?: () => number;
}

export interface AcmeEvent {
  type: 'tls.certificate.issued' | 'tls.certificate.renewed' | 'tls.certificate.failed';
  host: string;
  reason: string;
  data: Record<string, unknown>;
}

export interface HostCertStatus {
  host: string;
  /** Whether a certificate is being served for this host. */
  serving: boolean;
  notAfter: number | null;
  serial: string | null;
  renewAt: number | null;
  lastError: string | null;
  lastAttemptAt: number | null;
  nextAttemptAt: number | null;
}

interface HostState { failures: number; lastError: string | null; lastAttemptAt: number | null; retryAt: number | null }

type AcmeModule = typeof import('acme-client');

/** Atomic write of a secret file: temp file 0600, then rename (a crash leaves the old file or the new, never half). */
function writeSecret(file: string, data: string | Buffer): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

/** File-name-safe form of a host name (`*.example.com` → `_wildcard_.example.com`). */
function fileStem(host: string): string {
  return host.toLowerCase().replace(/^\*\./, '_wildcard_.').replace(/[^a-z0-9._-]/g, '_');
}

export class AcmeManager {
  readonly #opts: AcmeOptions;
  /** Reports issued/renewed/failed (settable after construction: the daemon wires it once controllers exist). */
  onEvent: ((e: AcmeEvent) => void) | undefined;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #dir: string;
  readonly #renewBeforeMs: number;
  /** token → key authorization, while a challenge is pending. */
  readonly #tokens = new Map<string, string>();
  readonly #hosts = new Map<string, HostState>();
  #client: import('acme-client').Client | null = null;
  #acme: AcmeModule | null = null;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #closed = false;

  constructor(opts: AcmeOptions) {
    this.#opts = opts;
    this.onEvent = opts.onEvent;
    this.#log = (opts.logger ?? silentLogger).child({ component: 'acme' });
    this.#now = opts.now ?? Date.now;
    this.#dir = path.join(opts.stateDir, 'acme');
    this.#renewBeforeMs = opts.renewBeforeMs ?? DEFAULT_RENEW_BEFORE_MS;
    for (const h of opts.hosts) this.#hosts.set(h.toLowerCase(), { failures: 0, lastError: null, lastAttemptAt: null, retryAt: null });
  }

  /** The key authorization for a pending HTTP-01 token, or undefined (the router answers 404). */
  challengeResponse(token: string): string | undefined {
    return this.#tokens.get(token);
  }

  /**
   * Installs the certificates stored by an earlier run (so TLS serves at once after a restart),
   * then starts obtaining what is missing or due, in the background.
   */
  start(): void {
    this.#ensureDir();
    for (const host of this.#hosts.keys()) {
      const stem = path.join(this.#dir, fileStem(host));
      if (!existsSync(`${stem}.crt`) || !existsSync(`${stem}.key`)) continue;
      try {
        this.#opts.store.set([host], { cert: readFileSync(`${stem}.crt`), key: readFileSync(`${stem}.key`) }, 'acme');
      } catch (err) {
        this.#log.warn({ host, err: (err as Error).message }, 'stored certificate unusable; a new one will be ordered');
      }
    }
    this.#schedule(0);
  }

  /** When a host's certificate is due for renewal: renewBefore before expiry, or at two thirds of its life if that is earlier. */
  renewAt(info: CertificateInfo): number {
    const life = info.notAfter - info.notBefore;
    return info.notAfter - Math.max(Math.min(this.#renewBeforeMs, life), Math.floor(life / 3));
  }

  /**
   * One pass: order a certificate for every host that has none or whose renewal time has come
   * (and whose retry time, after a failure, has come). Never throws; resolves when done.
   */
  check(): Promise<void> {
    this.#running ??= this.#check().finally(() => { this.#running = null; });
    return this.#running;
  }

  async #check(): Promise<void> {
    for (const [host, st] of this.#hosts) {
      if (this.#closed) return;
      const now = this.#now();
      const info = this.#opts.store.info(host);
      // Missing, or ours and due; a certificate from files is never replaced by ACME.
      const due = info === null || (info.source === 'acme' && now >= this.renewAt(info));
      if (!due || (st.retryAt !== null && now < st.retryAt)) continue;
      st.lastAttemptAt = now;
      try {
        const issued = await this.#order(host);
        const renewed = info !== null;
        st.failures = 0; st.lastError = null; st.retryAt = null;
        const reason = `${renewed ? 'renewed' : 'obtained'} the certificate for ${host} from ${this.#opts.directory}; valid until ${new Date(issued.notAfter).toISOString()}`;
        this.#log.info({ host, notAfter: new Date(issued.notAfter).toISOString(), serial: issued.serial }, reason);
        this.#emit({ type: renewed ? 'tls.certificate.renewed' : 'tls.certificate.issued', host, reason, data: { host, notAfter: issued.notAfter, serial: issued.serial, previousSerial: info?.serial ?? null } });
      } catch (err) {
        st.failures++;
        st.lastError = describe(err);
        const delay = Math.min(ACME_MAX_RETRY_MS, ACME_FIRST_RETRY_MS * 2 ** (st.failures - 1));
        st.retryAt = this.#now() + delay;
        const serving = this.#opts.store.info(host);
        const reason = `could not ${info === null ? 'obtain' : 'renew'} the certificate for ${host} from ${this.#opts.directory}: ${st.lastError}; ${serving ? `the current certificate (valid until ${new Date(serving.notAfter).toISOString()}) stays in service` : 'no certificate is served for it yet'}; next attempt in ${Math.round(delay / 1000)}s`;
        this.#log.warn({ host, attempt: st.failures, error: st.lastError }, reason);
        this.#emit({ type: 'tls.certificate.failed', host, reason, data: { host, error: st.lastError, attempt: st.failures, serving: serving !== null, notAfter: serving?.notAfter ?? null, retryAt: st.retryAt } });
      }
    }
  }

  /** Runs one ACME order for `host` (HTTP-01), stores and installs the result. */
  async #order(host: string): Promise<CertificateInfo> {
    const acme = await this.#module();
    const client = await this.#accountClient(acme);
    const [key, csr] = await acme.crypto.createCsr({ commonName: host, altNames: [host] }, await acme.crypto.createPrivateEcdsaKey());
    const cert = await client.auto({
      csr,
      email: this.#opts.email,
      termsOfServiceAgreed: true,
      challengePriority: ['http-01'],
      // The ACME server validates through our HTTP listener; a self-check from here would go
      // through DNS this machine may not resolve like the world does.
      skipChallengeVerification: true,
      challengeCreateFn: async (_authz, challenge, keyAuthorization) => { this.#tokens.set(challenge.token, keyAuthorization); },
      challengeRemoveFn: async (_authz, challenge) => { this.#tokens.delete(challenge.token); },
    });
    const pem = { cert: Buffer.from(cert), key };
    // Install first: a pair the TLS stack refuses is never written over the stored one.
    const [info] = this.#opts.store.set([host], pem, 'acme');
    const stem = path.join(this.#dir, fileStem(host));
    writeSecret(`${stem}.key`, key);
    writeSecret(`${stem}.crt`, pem.cert);
    return info;
  }

  async #module(): Promise<AcmeModule> {
    if (this.#acme !== null) return this.#acme;
    // Loaded only when ACME is configured (it brings axios and node-forge).
    const mod = (await import('acme-client')) as AcmeModule & { default?: AcmeModule };
    const acme = mod.default ?? mod;
    // Our scheduler retries failed orders with its own backoff; the library's own retries (5, up to
    // 75 s in all) would only hold a pass up. A silent server fails after ACME_REQUEST_TIMEOUT_MS.
    const settings = (acme.axios.defaults as { acmeSettings?: { retryMaxAttempts: number; retryDefaultDelay: number } }).acmeSettings;
    if (settings) { settings.retryMaxAttempts = 1; settings.retryDefaultDelay = 1; }
    acme.axios.defaults.timeout = ACME_REQUEST_TIMEOUT_MS;
    if (this.#opts.caFile !== undefined) {
      // acme-client talks through one shared axios instance: trust the private CA there.
      acme.axios.defaults.httpsAgent = new HttpsAgent({ ca: readFileSync(this.#opts.caFile), keepAlive: false });
    }
    this.#acme = acme;
    return acme;
  }

  #ensureDir(): void {
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    chmodSync(this.#dir, 0o700);
  }

  async #accountClient(acme: AcmeModule): Promise<import('acme-client').Client> {
    if (this.#client !== null) return this.#client;
    this.#ensureDir();
    const keyFile = path.join(this.#dir, 'account.key');
    let accountKey: Buffer;
    if (existsSync(keyFile)) accountKey = readFileSync(keyFile);
    else {
      accountKey = await acme.crypto.createPrivateEcdsaKey();
      writeSecret(keyFile, accountKey);
    }
    // Few, quick retries: the scheduler retries a failed order with its own backoff.
    this.#client = new acme.Client({ directoryUrl: this.#opts.directory, accountKey, backoffAttempts: 3, backoffMin: 200, backoffMax: 2_000 });
    return this.#client;
  }

  status(): HostCertStatus[] {
    return [...this.#hosts].map(([host, st]) => {
      const info = this.#opts.store.info(host);
      return {
        host, serving: info !== null, notAfter: info?.notAfter ?? null, serial: info?.serial ?? null,
        renewAt: info !== null && info.source === 'acme' ? this.renewAt(info) : null,
        lastError: st.lastError, lastAttemptAt: st.lastAttemptAt, nextAttemptAt: st.retryAt,
      };
    });
  }

  #emit(e: AcmeEvent): void {
    try { this.onEvent?.(e); } catch { /* reporting must not break renewal */ }
  }

  /** The next pass: after `delayMs`, then at the earliest renewal or retry time, at most an hour apart. */
  #schedule(delayMs: number): void {
    if (this.#closed) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.check().then(() => this.#schedule(this.#nextDelay()));
    }, delayMs);
    this.#timer.unref();
  }

  #nextDelay(): number {
    const now = this.#now();
    let next = now + ACME_CHECK_INTERVAL_MS;
    for (const [host, st] of this.#hosts) {
      const info = this.#opts.store.info(host);
      if (st.retryAt !== null) next = Math.min(next, st.retryAt);
      else if (info !== null && info.source === 'acme') next = Math.min(next, this.renewAt(info));
    }
    return Math.max(1_000, next - now);
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running?.catch(() => {});
  }
}

/** A short, secret-free description of an ACME failure. */
function describe(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string } };
  const code = e.code ?? e.cause?.code;
  const msg = (e.message ?? String(err)).split('\n')[0].slice(0, 300);
  return code !== undefined && !msg.includes(code) ? `${msg} (${code})` : msg;
}
