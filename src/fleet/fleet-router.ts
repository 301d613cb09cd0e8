/** Fleet mode of `cutover router` (etcd): not built yet in this commit. */
import type { Logger } from '../telemetry/logger.ts';
import type { RouterProcess, RouterSettings } from '../dataplane/router-process.ts';
import type { FleetConfig } from './schema.ts';
import { CutoverError } from '../lib/errors.ts';

export async function startFleetRouter(_settings: RouterSettings, _fleet: FleetConfig, _logger: Logger): Promise<RouterProcess> {
  throw new CutoverError('CUTOVER_ERR_CONFIG', 'fleet mode is not available yet');
}
