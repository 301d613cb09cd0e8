/**
 * `cutover agent --id NAME`: run this host's share of the instances for the controller (fleet mode,
 * issue 11) in the foreground until SIGINT/SIGTERM. On a signal it leaves the instances running
 * (the next agent on this state directory adopts them) unless `--stop-instances` was given.
 * The agent and etcd modules are loaded when the command runs: other commands never load them.
 */
import os from 'node:os';
import { CutoverError, EXIT } from '../lib/errors.ts';
import { AGENT_ID } from '../config/schema.ts';
import { createConsoleLogger } from '../lib/logger.ts';
import { packageVersion } from '../lib/version.ts';
import { loadConfig, type Io } from './context.ts';

/** A host name or IP routers reach: no scheme, no port. */
const ADDRESS = /^(\[[0-9a-fA-F:]+\]|[0-9a-fA-F:]*:[0-9a-fA-F:]+|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$/;

export async function runAgent(io: Io, configFile: string | undefined, opts: { id?: string; address?: string; stopInstances?: boolean }): Promise<number> {
  const id = opts.id ?? '';
  if (!AGENT_ID.test(id)) throw new CutoverError('CUTOVER_ERR_USAGE', `--id: expected an agent id (letters, digits, ".", "_", "-") as listed in environments.process.hosts, got ${JSON.stringify(opts.id ?? null)}`);
  const config = loadConfig(io, configFile);
  if (!config.fleet) throw new CutoverError('CUTOVER_ERR_CONFIG', `${config.file ?? 'the config'}: cutover agent needs fleet: (etcd), where the controller writes the instances it wants`, { details: { field: 'fleet' } });
  const p = config.environments.process;
  if (config.environments.provider !== 'process' || !p) throw new CutoverError('CUTOVER_ERR_CONFIG', `${config.file ?? 'the config'}: cutover agent runs environments.process.command: set environments.provider to "process"`, { details: { field: 'environments.provider' } });
  // Default: this host's name. Never loopback by default: a router on another host would reach its own.
  const address = opts.address ?? os.hostname();
  if (!ADDRESS.test(address)) throw new CutoverError('CUTOVER_ERR_USAGE', `--address: expected the host name or IP routers reach this host's instances on (no scheme, no port), got ${JSON.stringify(address)}`);
  const { Agent } = await import('../fleet/agent.ts');
  const logger = await createConsoleLogger(io.env);
  const agent = await Agent.start({
    id, app: config.app, address, stateDir: config.stateDir, fleet: config.fleet, version: await packageVersion(), logger,
    process: { command: p.command, env: p.env, inheritEnv: p.inheritEnv, stopTimeout: p.stopTimeout },
  });
  io.stdout.write(`cutover agent ${id} is up (pid ${process.pid}) on ${os.hostname()}: instances reached at ${address}, fleet ${config.fleet.etcd.endpoints.join(',')}, state ${agent.dir}\n`);
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      logger.info({ signal: sig, stopInstances: opts.stopInstances === true }, opts.stopInstances ? 'agent stopping its instances' : 'agent leaving; its instances keep running for the next agent to adopt');
      void agent.stop({ stopInstances: opts.stopInstances === true }).finally(resolve);
    };
    const onInt = () => stop('SIGINT');
    const onTerm = () => stop('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
  });
  setTimeout(() => process.exit(0), 100).unref();
  return EXIT.OK;
}
