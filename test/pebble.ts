/**
 * A real ACME server on loopback for tests: Pebble (Let's Encrypt's test CA) with
 * pebble-challtestsrv as its DNS, answering 127.0.0.1 for every name, so HTTP-01 validation
 * reaches the router's HTTP listener on `httpPort`. Its directory certificate is made here with
 * openssl; its issuing root is read from its management interface. Stopped by `stop()`.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import path from 'node:path';
import { freePort, waitFor } from './helpers.ts';

export interface Pebble {
  directory: string;
  /** PEM of the certificate Pebble's own HTTPS listener uses (trust it as the ACME server's CA). */
  caFile: string;
  /** PEM of the root that signs the certificates Pebble issues (trust it as a TLS client). */
  issuingRoot(): Promise<string>;
  stop(): Promise<void>;
  output(): string;
}

function httpsGet(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

async function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 3_000);
  await exited;
  clearTimeout(t);
}

export async function startPebble(dir: string, httpPort: number): Promise<Pebble> {
  const cert = path.join(dir, 'pebble.crt');
  const key = path.join(dir, 'pebble.key');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
    '-days', '1', '-subj', '/CN=pebble', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  const [acmePort, mgmtPort, dnsPort, dnsMgmtPort, tlsPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const cfg = path.join(dir, 'pebble.json');
  writeFileSync(cfg, JSON.stringify({ pebble: {
    listenAddress: `127.0.0.1:${acmePort}`, managementListenAddress: `127.0.0.1:${mgmtPort}`,
    certificate: cert, privateKey: key, httpPort, tlsPort, ocspResponderURL: '', externalAccountBindingRequired: false,
  } }));
  let out = '';
  const dns = spawn('pebble-challtestsrv', ['-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '',
    '-management', `127.0.0.1:${dnsMgmtPort}`, '-defaultIPv4', '127.0.0.1', '-defaultIPv6', ''], { stdio: ['ignore', 'pipe', 'pipe'] });
  dns.stdout!.on('data', (d: Buffer) => { out += `[dns] ${d}`; });
  dns.stderr!.on('data', (d: Buffer) => { out += `[dns] ${d}`; });
  const pebble = spawn('pebble', ['-config', cfg, '-dnsserver', `127.0.0.1:${dnsPort}`], {
    // No artificial validation delays; no deliberately rejected nonces (the test is about us, not retries).
    env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  pebble.stdout!.on('data', (d: Buffer) => { out += d; });
  pebble.stderr!.on('data', (d: Buffer) => { out += d; });
  const caPem = execFileSync('cat', [cert]).toString();
  const directory = `https://127.0.0.1:${acmePort}/dir`;
  const stop = async () => { await stopChild(pebble); await stopChild(dns); };
  try {
    await waitFor(async () => (await httpsGet(directory, caPem).catch(() => ({ status: 0 }))).status === 200, { what: `pebble directory\n${out}`, timeoutMs: 15_000 });
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    directory,
    caFile: cert,
    issuingRoot: async () => (await httpsGet(`https://127.0.0.1:${mgmtPort}/roots/0`, caPem)).body,
    stop,
    output: () => out,
  };
}
