/**
 * The certificates the router's TLS listener serves, chosen by SNI (RFC 6066 §3): one secure
 * context per host name, from certificate files named in the config or from ACME
 * (acme-manager.ts). Lookup is exact first, then one wildcard label (`*.example.com`).
 *
 * Owns: the host → secure-context map and what is known about each certificate (source, expiry).
 * Must never: log or return key material, or drop a working certificate because a replacement
 * failed to load (`set` throws before anything changes).
 */
import { X509Certificate } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import { loadTlsFiles, type TlsFiles } from '../lib/tls-files.ts';

export type CertificateSource = 'file' | 'acme';

export interface CertificateInfo {
  host: string;
  source: CertificateSource;
  /** Expiry of the leaf certificate, epoch ms. */
  notAfter: number;
  notBefore: number;
  /** Leaf serial number (hex), to tell a renewal from the certificate it replaced. */
  serial: string;
  issuer: string;
}

interface Entry { context: SecureContext; info: CertificateInfo; pem: { cert: Buffer; key: Buffer } }

/** Facts about the first certificate of a PEM chain. */
export function leafInfo(certPem: Buffer | string): { notAfter: number; notBefore: number; serial: string; issuer: string } {
  const leaf = new X509Certificate(certPem);
  return { notAfter: Date.parse(leaf.validTo), notBefore: Date.parse(leaf.validFrom), serial: leaf.serialNumber, issuer: leaf.issuer.replace(/\n/g, ', ') };
}

export class CertificateStore {
  readonly #byHost = new Map<string, Entry>();
  /** Served when the client sends no SNI (or a name we have no certificate for); null = handshake fails. */
  #fallback: Entry | null = null;

  /**
   * Install a certificate for `hosts`. Throws (and changes nothing) when the pair is malformed or
   * the key does not match, so a bad renewal never replaces a good certificate.
   */
  set(hosts: readonly string[], pem: { cert: Buffer; key: Buffer }, source: CertificateSource): CertificateInfo[] {
    const context = createSecureContext({ cert: pem.cert, key: pem.key });
    const facts = leafInfo(pem.cert);
    const out: CertificateInfo[] = [];
    for (const raw of hosts) {
      const host = raw.toLowerCase();
      const info: CertificateInfo = { host, source, ...facts };
      const entry = { context, info, pem };
      this.#byHost.set(host, entry);
      this.#fallback ??= entry;
      out.push(info);
    }
    return out;
  }

  /** Certificate files from the config (`router.tls` or `services.NAME.tls`). */
  setFiles(hosts: readonly string[], files: TlsFiles, setting: string): CertificateInfo[] {
    return this.set(hosts, loadTlsFiles(files, setting), 'file');
  }

  /** Served to clients without SNI or with an unknown name. */
  setFallback(pem: { cert: Buffer; key: Buffer }): void {
    const context = createSecureContext({ cert: pem.cert, key: pem.key });
    this.#fallback = { context, pem, info: { host: '*', source: 'file', ...leafInfo(pem.cert) } };
  }

  lookup(servername: string | undefined): SecureContext | null {
    if (servername === undefined || servername === '') return this.#fallback?.context ?? null;
    const name = servername.toLowerCase();
    const exact = this.#byHost.get(name);
    if (exact !== undefined) return exact.context;
    const dot = name.indexOf('.');
    if (dot > 0) {
      const wild = this.#byHost.get(`*${name.slice(dot)}`);
      if (wild !== undefined) return wild.context;
    }
    return this.#fallback?.context ?? null;
  }

  /** For `tls.createServer({ SNICallback })`: the context for the name, or the fallback. */
  readonly sniCallback = (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void => {
    const ctx = this.lookup(servername);
    if (ctx === null) cb(new Error(`no certificate for ${JSON.stringify(servername)}`));
    else cb(null, ctx);
  };

  /** A PEM pair for the server's default context (node needs one to start a TLS server with SNI). */
  defaultPem(): { cert: Buffer; key: Buffer } | null {
    return this.#fallback?.pem ?? null;
  }

  info(host: string): CertificateInfo | null {
    return this.#byHost.get(host.toLowerCase())?.info ?? null;
  }

  list(): CertificateInfo[] {
    return [...this.#byHost.values()].map((e) => e.info);
  }
}
