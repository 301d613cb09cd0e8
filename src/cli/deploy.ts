/**
 * `cutover deploy`: start a deployment, print each step with its duration as it happens (with a
 * spinner on the phase in progress when stdout is a terminal), and end with a summary line.
 */
import type { AdminClient } from '../api/client.ts';
import type { DeploymentRecord, EventRecord } from '../store/types.ts';
import { FINISHED_STATUSES } from '../store/types.ts';
import type { Io } from './context.ts';
import { EXIT } from '../lib/errors.ts';
import { finalLine } from './format.ts';
import { LiveSteps } from './live-steps.ts';

export async function runDeploy(io: Io, client: AdminClient, o: { version: string; path: string | null; manual: boolean; force?: boolean; wait: boolean; json: boolean }): Promise<number> {
  try {
    const { deployment } = await client.call<{ deployment: DeploymentRecord }>('POST', '/deployments', { version: o.version, path: o.path, manual: o.manual, ...(o.force ? { force: true } : {}) });
    if (!o.wait) {
      if (o.json) io.stdout.write(`${JSON.stringify({ deployment }, null, 2)}\n`);
      else io.stdout.write(`deployment ${deployment.id} started: ${deployment.version} → ${deployment.color} (follow with \`cutover status\`)\n`);
      return EXIT.OK;
    }
    let final: DeploymentRecord | null = null;
    const events: EventRecord[] = [];
    const steps = o.json ? null : new LiveSteps(io);
    try {
      await client.follow({
        deployment: deployment.id,
        onMessage: (m) => {
          if (m.kind === 'event') {
            events.push(m.event);
            steps?.event(m.event);
            return false;
          }
          if (FINISHED_STATUSES.includes(m.deployment.status)) {
            final = m.deployment;
            return true;
          }
          // awaiting-promotion is printed once by the promote.waiting event; keep following.
          steps?.deployment(m.deployment);
          return false;
        },
      });
    } finally {
      steps?.stop();
    }
    const result = final ?? (await client.call<{ deployment: DeploymentRecord }>('GET', `/deployments/${deployment.id}`)).deployment;
    if (o.json) io.stdout.write(`${JSON.stringify({ deployment: result, events }, null, 2)}\n`);
    else steps!.finish(finalLine(result));
    return result.status === 'succeeded' ? EXIT.OK : EXIT.FAILED;
  } finally {
    await client.close();
  }
}
