/** Human output of `cutover status` and `cutover history`. */
import { formatDuration } from '../lib/duration.ts';
import type { DeploymentRecord } from '../store/types.ts';
import type { Status } from '../plugin-api/status.ts';
import type { Io } from './context.ts';
import { ago, table } from './format.ts';

export function printStatus(io: Io, s: Status): void {
  const out: string[] = [];
  out.push(`${s.app}: ${s.live ? `live ${s.live.version} on ${s.live.color} (since ${ago(s.live.since)})` : 'nothing is live yet'}`);
  if (s.standby) {
    const beside = s.standby.besideCandidate ? `, running beside the candidate ${s.standby.besideCandidate} until it has switched` : '';
    out.push(`standby: ${s.standby.version} on ${s.standby.color}, ${s.standby.state === 'warm' ? `warm${beside}${s.standby.retireAt && !beside ? `, retires in ${formatDuration(Math.max(0, s.standby.retireAt - Date.now()))}` : ''}` : 'retired (a rollback restarts it)'}`);
  } else {
    out.push('standby: none');
  }
  if (s.deployment) out.push(`deployment: ${s.deployment.id} ${s.deployment.version} → ${s.deployment.color}, ${s.deployment.status}, phase ${s.deployment.phase}`);
  const fleet = s as Status & { leader?: { id: string; admin: string } | null; controllers?: { id: string; leader: boolean; self: boolean }[] };
  if (fleet.controllers) {
    const names = fleet.controllers.map((c) => `${c.id}${c.leader ? ' (leader)' : ''}${c.self ? ' (this one)' : ''}`).join(', ');
    out.push(`controllers: ${names}; ${fleet.leader ? `leader ${fleet.leader.id} at ${fleet.leader.admin}` : 'no leader right now (an election is under way)'}`);
  }
  out.push(`router: live ${s.router.live}, preview ${s.router.preview ?? 'off'} (route revision ${s.router.revision})`);
  if (s.router.split) out.push(`gradual switch: ${Math.round(s.router.split.share * 1000) / 10} % of live traffic on ${s.router.split.color}`);
  if (s.router.mirror) out.push(`mirroring: ${Math.round(s.router.mirror.sample * 1000) / 10} % of live requests copied to the candidate (${s.router.mirror.id})`);
  io.stdout.write(`${out.join('\n')}\n\n`);
  const rows = [['COLOR', 'ROLE', 'VERSION', 'INSTANCES']];
  for (const e of Object.values(s.environments)) {
    const inst = e.instances.map((i) => `${i.id}:${i.port}${i.healthy ? '' : '(down)'}`).join(' ');
    rows.push([e.color, e.role, e.version ?? '-', e.instances.length ? `${e.healthy}/${e.instances.length} healthy  ${inst}` : '-']);
  }
  io.stdout.write(table(rows));
  if (s.routers && s.routers.length > 0) {
    const acked = s.routers.filter((r) => r.revision === s.router.revision && !r.stale).length;
    const rr = [['ROUTER', 'REVISION', 'LIVE', 'PREVIEW', 'ACK', 'LAST SEEN']];
    for (const r of s.routers) {
      rr.push([
        r.id, `${r.revision}${r.stale ? ' (stale)' : ''}`,
        r.live ? `${r.live.version} on ${r.live.color}` : '-', r.preview ? `${r.preview.version} on ${r.preview.color}` : '-',
        r.ackMs !== null ? formatDuration(r.ackMs) : '-', r.lastSeen !== null ? ago(r.lastSeen) : '-',
      ]);
    }
    io.stdout.write(`\nrouters: ${acked}/${s.routers.length} serve route revision ${s.router.revision}\n${table(rr)}`);
  } else if (s.routers) {
    io.stdout.write('\nrouters: none registered (start `cutover router` on the router hosts)\n');
  }
  if (s.migrations && s.migrations.pending.length > 0) io.stdout.write(`\npending contract migrations: ${s.migrations.pending.join(', ')}\n`);
  const rt = s.migrations?.rollbackTarget;
  if (rt && !rt.canServe) io.stdout.write(`\n✗ the rollback target ${rt.version} (${rt.color}, ${rt.state}) can no longer serve the schema: ${rt.problems.join('; ')}\n`);
}

export function printHistory(io: Io, ds: DeploymentRecord[]): void {
  if (ds.length === 0) {
    io.stdout.write('no deployments yet\n');
    return;
  }
  const rows = [['ID', 'VERSION', 'COLOR', 'STATUS', 'SWITCH', 'DURATION', 'WHEN', 'WHY']];
  for (const d of ds) {
    rows.push([
      d.id, d.version, d.color, d.rolledBack ? `${d.status}, rolled back` : d.status,
      d.switchMs !== null ? formatDuration(d.switchMs) : '-',
      d.finishedAt ? formatDuration(d.finishedAt - d.createdAt) : '-',
      ago(d.createdAt),
      d.rolledBack ? `rolled back by ${d.rolledBack.actor} ${ago(d.rolledBack.at)}`.slice(0, 80) : d.error ? d.error.message.slice(0, 80) : '',
    ]);
  }
  io.stdout.write(table(rows));
}

/** One service as `GET /api/v1/services` lists it. */
export interface ServiceSummary {
  name: string;
  hosts: string[];
  live: { color: string; version: string | null } | null;
  standby: { color: string; version: string | null; state: string } | null;
  deployment: { id: string; version: string; status: string; phase: string } | null;
}

/** `cutover status` with several services and none named: one line per service. */
export function printServices(io: Io, services: readonly ServiceSummary[]): void {
  const width = Math.max(...services.map((s) => s.name.length));
  for (const s of services) {
    const live = s.live ? `live ${s.live.version} on ${s.live.color}` : 'nothing live';
    const standby = s.standby ? `, standby ${s.standby.version} on ${s.standby.color} (${s.standby.state})` : '';
    const dep = s.deployment && !['succeeded', 'failed', 'aborted', 'rolled-back', 'interrupted'].includes(s.deployment.status) ? `, deploying ${s.deployment.version} (${s.deployment.phase})` : '';
    io.stdout.write(`${s.name.padEnd(width)}  ${live}${standby}${dep}  [${s.hosts.join(', ')}]\n`);
  }
  io.stdout.write('(cutover status -s NAME for one service in full)\n');
}
