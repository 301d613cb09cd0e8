// Cutover dashboard (plain ES module, no dependencies, no build step).
// Data only from the authenticated admin API: the token is asked once, kept in sessionStorage,
// and sent as a bearer header; the event stream is read with fetch() so the header can be sent
// (EventSource cannot send headers, and the token must never go into a URL).

const API = '/api/v1';
const TOKEN_KEY = 'cutover.token';
const STATS_POLL_MS = 5_000;
const REPORT_POLL_MS = 60_000;
// The pipeline's phases in order: DEPLOYMENT_PHASES of src/store/types.ts (this page loads no module of the daemon).
const PHASES = ['provision', 'health', 'migrate', 'gates', 'promote', 'switch', 'verify', 'analysis', 'stable'];
const MARK = { passed: '✓', failed: '✗', skipped: '–', running: '…', pending: '·' };
const MAX_EVENTS_SHOWN = 50;

const $ = (sel) => document.querySelector(sel);
const state = { status: null, deployment: null, events: [], lastSeq: 0, switches: [], streamAbort: null };

// ───────────────────────────── helpers ─────────────────────────────

/** Create an element with text and attributes; never parses HTML from data. */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function fmtMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  if (ms < 1) return `${(ms * 1000).toFixed(0)}µs`;
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
const fmtPct = (x) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : `${(x * 100).toFixed(x < 0.001 && x > 0 ? 3 : 2)}%`);
const fmtTime = (t) => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
const fmtDate = (t) => new Date(t).toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
function ago(t) {
  const s = Math.max(0, (Date.now() - t) / 1000);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

// ───────────────────────────── API ─────────────────────────────

class Unauthorised extends Error {}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

// With `services:` the page shows one service at a time, chosen in the header and kept in the
// URL fragment (#service=NAME); every call is scoped to it (/api/v1/services/NAME/…).
let SERVICE = new URLSearchParams(location.hash.slice(1)).get('service');
function scoped(path) { return SERVICE && path !== '/services' ? `/services/${encodeURIComponent(SERVICE)}${path}` : path; }

async function pickService() {
  let services;
  try { ({ services } = await api('GET', '/services')); } catch (err) { if (err instanceof Unauthorised) throw err; return; }
  if (!Array.isArray(services) || services.length < 2) { SERVICE = null; return; }
  if (!services.some((s) => s.name === SERVICE)) SERVICE = services[0].name;
  const sel = $('#service');
  sel.replaceChildren(...services.map((s) => {
    const o = document.createElement('option');
    o.value = s.name;
    o.textContent = `${s.name}${s.live ? ` (${s.live.version})` : ''}`;
    o.selected = s.name === SERVICE;
    return o;
  }));
  sel.onchange = () => { location.hash = `service=${encodeURIComponent(sel.value)}`; location.reload(); };
  $('#service-pick').hidden = false;
}

async function api(method, path, body) {
  const res = await fetch(API + scoped(path), {
    method,
    headers: { authorization: `Bearer ${token()}`, 'x-cutover-actor': 'dashboard', ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    cache: 'no-store',
  });
  if (res.status === 401) throw new Unauthorised();
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data?.error?.message ?? `HTTP ${res.status}`);
  return data;
}

function onApiError(err) {
  if (err instanceof Unauthorised) { askToken('That token was not accepted.'); return; }
  setConn('down', `Error: ${err.message}`);
}

// ───────────────────────────── token ─────────────────────────────

function askToken(message = '') {
  stopStream();
  sessionStorage.removeItem(TOKEN_KEY);
  $('#main').hidden = true;
  $('#sign-out').hidden = true;
  setConn('', 'Not connected');
  $('#token-error').textContent = message;
  const d = $('#token-dialog');
  if (!d.open) d.showModal();
  $('#token-input').focus();
}

$('#token-form').addEventListener('submit', (ev) => {
  const v = $('#token-input').value.trim();
  if (!v) { ev.preventDefault(); return; }
  sessionStorage.setItem(TOKEN_KEY, v);
  $('#token-input').value = '';
  start();
});
$('#token-dialog').addEventListener('cancel', (ev) => ev.preventDefault()); // the page is useless without it
$('#sign-out').addEventListener('click', () => askToken());

function setConn(cls, text) {
  const c = $('#conn');
  c.className = `conn ${cls}`;
  c.textContent = text;
}

// ───────────────────────────── environments ─────────────────────────────

function renderEnvironments() {
  const s = state.status;
  if (!s) return;
  $('#app-name').textContent = s.app;
  document.title = s.live ? `${s.live.version} live · ${s.app} · Cutover` : `${s.app} · Cutover`;
  for (const color of ['blue', 'green']) {
    const env = s.environments[color];
    const box = $(`#env-${color}`);
    const live = env.role === 'live';
    box.classList.toggle('is-live', live);
    box.setAttribute('aria-label', `${color}: ${env.role}${env.version ? `, ${env.version}` : ''}`);
    const roleText = env.role === 'standby' ? 'standby (warm)' : env.role;
    const healthy = env.instances.filter((i) => i.healthy).length;
    const dots = el('div', { class: 'dots' },
      ...env.instances.map((i) => el('span', { class: `dot ${i.healthy ? 'up' : 'down'}`, title: `${i.id} :${i.port} ${i.healthy ? 'healthy' : 'down'}`, role: 'img', 'aria-label': `${i.id} ${i.healthy ? 'healthy' : 'down'}` })),
      el('span', { text: env.instances.length ? `${healthy}/${env.instances.length} healthy` : 'no instances running' }));
    let meta = `${roleText} since ${ago(env.since)}`;
    if (env.role === 'standby' && env.retireAt) meta += ` · retires in ${fmtMs(Math.max(0, env.retireAt - Date.now()))}`;
    if (env.role === 'empty') meta = 'never used';
    // The rollback target (migrations plugin): a schema it can no longer serve is said on its box.
    const rt = s.migrations?.rollbackTarget;
    const schemaWarning = rt && rt.color === color && !rt.canServe
      ? el('div', { class: 'schema-warning', role: 'alert', 'data-testid': `schema-warning-${color}`, text: `✗ can no longer serve the schema: ${rt.problems.join('; ')}` })
      : null;
    box.replaceChildren(
      el('h3', { text: color }),
      el('span', { class: `role ${env.role}`, 'data-testid': `role-${color}`, text: live ? 'Live' : env.role }),
      el('div', { class: 'version', 'data-testid': `version-${color}`, text: env.version ?? '—' }),
      el('div', { class: 'meta', text: meta }),
      dots,
      ...(schemaWarning ? [schemaWarning] : []),
    );
  }
  const canRollback = s.standby !== null && (!s.deployment || ['switch', 'verify', 'analysis', 'stable'].includes(s.deployment.phase));
  $('#btn-rollback').disabled = !canRollback;
  const rtBroken = s.migrations?.rollbackTarget && !s.migrations.rollbackTarget.canServe;
  $('#btn-rollback').title = canRollback ? `Switch live traffic back to ${s.standby.version} on ${s.standby.color}${rtBroken ? ' (it can no longer serve the schema: refused unless forced from the CLI)' : ''}` : 'Nothing to roll back to';
  const d = s.deployment;
  $('#btn-promote').disabled = !(d && d.status === 'awaiting-promotion');
  $('#btn-abort').disabled = !(d && !['switch', 'verify', 'analysis', 'stable'].includes(d.phase));
}

// ───────────────────────────── charts (hand-written SVG) ─────────────────────────────

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/** A two-series line chart: x = time, y from 0 to a rounded maximum. */
function lineChart(figure, data, value, format, from, to, opts = {}) {
  const W = 360, H = 130, L = 44, R = 6, T = 8, B = 18;
  const plot = figure.querySelector('.plot');
  let max = 0;
  for (const c of ['blue', 'green']) for (const p of data.colors[c]) { const v = value(p); if (v !== null && v > max) max = v; }
  max = niceMax(Math.max(max, opts.minMax ?? 0));
  const axisFormat = opts.axis ?? format;
  const x = (t) => L + ((t - from) / (to - from)) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img' });
  for (const f of [0, 0.5, 1]) {
    root.append(svg('line', { class: 'grid', x1: L, x2: W - R, y1: y(max * f), y2: y(max * f) }));
    const label = svg('text', { class: 'axis', x: L - 4, y: y(max * f) + 3, 'text-anchor': 'end' });
    label.textContent = axisFormat(max * f);
    root.append(label);
  }
  for (const [t, text] of [[from, '-15m'], [to, 'now']]) {
    const label = svg('text', { class: 'axis', x: x(t), y: H - 4, 'text-anchor': t === from ? 'start' : 'end' });
    label.textContent = text;
    root.append(label);
  }
  for (const s of state.switches) {
    if (s >= from && s <= to) root.append(svg('line', { class: 'switch', x1: x(s), x2: x(s), y1: T, y2: H - B }));
  }
  const latest = {};
  for (const c of ['blue', 'green']) {
    let d = '';
    let pen = false;
    for (const p of data.colors[c]) {
      const v = value(p);
      if (v === null) { pen = false; continue; }
      d += `${pen ? 'L' : 'M'}${x(p.t + data.stepMs / 2).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
      latest[c] = v;
    }
    if (d) root.append(svg('path', { class: `line ${c}`, d }));
  }
  const summary = ['blue', 'green'].map((c) => `${c} ${latest[c] !== undefined ? format(latest[c]) : 'no traffic'}`).join(', ');
  root.setAttribute('aria-label', `${figure.querySelector('figcaption').firstChild.textContent}, last 15 minutes; latest: ${summary}`);
  plot.replaceChildren(root);
  let now = figure.querySelector('figcaption .now');
  if (!now) { now = el('span', { class: 'now' }); figure.querySelector('figcaption').append(now); }
  now.textContent = summary;
}

async function refreshStats() {
  try {
    const data = await api('GET', '/stats?minutes=15&step=10s');
    const live = state.status?.live?.color;
    // Error rate and p95 only where there was traffic; rate is 0 when there was none.
    lineChart($('#chart-rps'), data, (p) => p.rps, (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)), data.from, data.to);
    lineChart($('#chart-err'), data, (p) => (p.requests > 0 ? p.errorRate : null), fmtPct, data.from, data.to, { minMax: 0.01, axis: (v) => `${+(v * 100).toFixed(1)}%` });
    lineChart($('#chart-p95'), data, (p) => p.p95Ms, fmtMs, data.from, data.to);
    $('#traffic-h').dataset.live = live ?? '';
  } catch (err) { onApiError(err); }
}

// ───────────────────────────── deployment ─────────────────────────────

function valuesText(data) {
  if (!data) return '';
  const skip = new Set(['outcome', 'gate', 'name', 'code']);
  return Object.entries(data)
    .filter(([k, v]) => !skip.has(k) && v !== null && typeof v !== 'object')
    .map(([k, v]) => `${k}=${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(3) : v}`)
    .join('  ');
}

function renderDeployment() {
  const box = $('#deployment');
  const dep = state.deployment;
  if (!dep) { box.replaceChildren(el('p', { class: 'muted', text: 'No deployment yet.' })); return; }
  const d = dep.deployment;
  const events = dep.events;
  const phaseEvents = new Map(events.filter((e) => e.type === 'phase').map((e) => [e.phase, e]));
  const checks = {
    gates: events.filter((e) => e.type === 'gate' && e.phase !== 'verify'),
    verify: events.filter((e) => e.type === 'gate' && e.phase === 'verify'),
    analysis: events.filter((e) => e.type.startsWith('analysis') || e.type === 'release.measured'),
  };
  const running = d.status === 'running' || d.status === 'awaiting-promotion';
  const items = PHASES.map((name) => {
    const e = phaseEvents.get(name);
    let outcome = e ? String(e.data?.outcome ?? 'passed') : 'pending';
    if (!e && running && d.phase === name) outcome = 'running';
    if (!e && name === 'stable' && d.status === 'succeeded') outcome = 'passed';
    const why = e ? e.reason : outcome === 'running' ? (d.status === 'awaiting-promotion' ? 'waiting for promotion' : 'in progress') : name === 'stable' && d.status === 'succeeded' ? 'the release is live' : '';
    const li = el('li', { class: outcome, 'data-phase': name },
      el('span', { class: 'mark', 'aria-hidden': 'true', text: MARK[outcome] ?? '•' }),
      el('span', { class: 'name', text: name }),
      el('span', { class: 'dur', text: e?.durationMs != null ? fmtMs(e.durationMs) : '' }),
      el('span', { class: 'why' }, el('span', { class: 'visually-hidden', text: `${outcome}: ` }), why));
    const list = checks[name];
    if (!list || list.length === 0) return [li];
    const sub = el('ul', { class: 'checks', 'aria-label': `${name} results` }, ...list.map((c) => el('li', {},
      el('span', { 'aria-hidden': 'true', text: `${MARK[String(c.data?.outcome ?? 'passed')] ?? '•'} ` }),
      `${c.reason} `, c.type === 'release.measured' ? null : el('span', { class: 'vals', text: valuesText(c.data) }))));
    return [li, el('li', { class: 'sub' }, sub)];
  }).flat();
  const later = state.report?.releases.find((x) => x.id === d.id && x.rolledBack && d.status === 'succeeded');
  const title = el('div', { class: 'dep-title' },
    el('strong', { text: `${d.version} → ${d.color}` }),
    el('span', { class: `status ${d.status}`, 'data-testid': 'deployment-status', text: d.status }),
    later ? el('span', { class: 'status rolled-back', text: `rolled back after ${fmtMs(later.timeToRollbackMs)}` }) : null,
    el('span', { class: 'muted', text: `${d.id} · by ${d.actor} · ${fmtDate(d.createdAt)}${d.finishedAt ? ` · took ${fmtMs(d.finishedAt - d.createdAt)}` : ''}` }));
  const children = [title, el('ol', { class: 'timeline', 'aria-label': 'Phases' }, ...items)];
  if (d.error) children.push(el('p', { class: 'error', text: d.error.message }));
  box.replaceChildren(...children);
}

async function refreshDeployment() {
  const id = state.status?.deployment?.id ?? state.latestDeploymentId;
  if (!id) { state.deployment = null; renderDeployment(); return; }
  try {
    state.deployment = await api('GET', `/deployments/${encodeURIComponent(id)}`);
    renderDeployment();
  } catch (err) { onApiError(err); }
}

// ───────────────────────────── history and figures ─────────────────────────────

function renderReport(r) {
  state.report = r;
  const fig = (label, value, note, id) => el('div', {}, el('dt', { text: label }), el('dd', { 'data-testid': id, text: value }, note ? el('small', { text: note }) : null));
  const ps = r.postSwitch;
  $('#figures').replaceChildren(
    fig('Cutover success rate', fmtPct(r.cutoverSuccessRate), `${r.cutovers.kept} of ${r.cutovers.switched} switches kept`, 'fig-cutover'),
    fig('Deployment success rate', fmtPct(r.deploymentSuccessRate), `${r.deployments.succeeded} of ${r.deployments.total - r.deployments.inProgress} finished`, 'fig-deploy'),
    fig('Time to switch (p50)', fmtMs(r.timeToSwitchMs?.p50), r.timeToSwitchMs ? `p95 ${fmtMs(r.timeToSwitchMs.p95)}` : 'no switches', 'fig-switch'),
    fig('Live before rollback (mean)', fmtMs(r.meanTimeToRollbackMs), `${r.rollbacks.count} rollback(s), ${r.rollbacks.automatic} automatic${r.rollbackMs ? `; each took p50 ${fmtMs(r.rollbackMs.p50)}` : ''}`, 'fig-mttr'),
    fig('Errors after switch', fmtPct(ps?.errorRate), ps ? `baseline ${fmtPct(ps.baselineErrorRate)}; ${ps.worseThanBaseline} worse` : 'not measured yet', 'fig-errors'),
  );
  const rows = r.releases.slice(0, 20).map((x) => el('tr', {},
    el('td', { text: x.version }), el('td', { text: x.color }),
    el('td', {}, el('span', { class: `status ${x.status}`, text: x.rolledBack && x.status === 'succeeded' ? 'rolled back later' : x.status })),
    el('td', { text: fmtDate(x.createdAt) }), el('td', { class: 'num', text: fmtMs(x.switchMs) }),
    el('td', { class: 'num', text: x.timeToRollbackMs !== null ? fmtMs(x.timeToRollbackMs) : '–' }),
    el('td', { class: 'num', text: x.postSwitch ? fmtPct(x.postSwitch.errorRate) : '–' }),
    el('td', { class: 'num', text: x.postSwitch?.baseline ? fmtPct(x.postSwitch.baseline.errorRate) : '–' })));
  $('#releases tbody').replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colspan: 8, class: 'muted', text: 'No releases in the last 30 days.' }))]));
  state.latestDeploymentId = r.releases[0]?.id ?? null;
}

async function refreshReport() {
  try { renderReport(await api('GET', '/report?since=30d')); } catch (err) { onApiError(err); }
}

// ───────────────────────────── events (fetch-streamed SSE) ─────────────────────────────

function addEvent(e) {
  if (e.seq <= state.lastSeq) return;
  state.lastSeq = e.seq;
  if (['switch', 'rollback', 'failover'].includes(e.type)) state.switches.push(e.time);
  state.events.unshift(e);
  state.events.length = Math.min(state.events.length, MAX_EVENTS_SHOWN);
  $('#events').prepend(el('li', {},
    el('time', { datetime: new Date(e.time).toISOString(), text: fmtTime(e.time) }),
    el('span', { class: 'type', text: e.type }),
    el('span', { class: 'why', text: e.reason })));
  while ($('#events').children.length > MAX_EVENTS_SHOWN) $('#events').lastChild.remove();
}

let refreshTimer = null;
/** Many events arrive in a burst at a switch: refresh once per burst. */
function scheduleRefresh(withReport) {
  if (withReport) scheduleRefresh.report = true;
  if (refreshTimer) return;
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    const report = scheduleRefresh.report;
    scheduleRefresh.report = false;
    await refreshStatus();
    if (report) await refreshReport();
    await refreshDeployment();
  }, 100);
}

function stopStream() {
  state.streamAbort?.abort();
  state.streamAbort = null;
}

async function stream() {
  stopStream();
  const ctl = new AbortController();
  state.streamAbort = ctl;
  let delay = 500;
  while (!ctl.signal.aborted) {
    try {
      // First connection: the recent past (from the deployment shown) then live; later: resume.
      const recent = Math.max(0, ...(state.deployment?.events ?? []).map((e) => e.seq)) - 30;
      const q = state.lastSeq > 0 ? `after=${state.lastSeq}` : recent > -30 ? `after=${Math.max(0, recent)}` : 'backlog=false';
      const res = await fetch(`${API}${scoped('/events')}?${q}`, { headers: { authorization: `Bearer ${token()}`, accept: 'text/event-stream' }, signal: ctl.signal, cache: 'no-store' });
      if (res.status === 401) throw new Unauthorised();
      if (!res.ok || !res.body) throw new Error(`event stream: HTTP ${res.status}`);
      setConn('live', 'Live');
      delay = 500;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          handleSse(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      }
    } catch (err) {
      if (ctl.signal.aborted) return;
      if (err instanceof Unauthorised) { askToken('That token was not accepted.'); return; }
    }
    if (ctl.signal.aborted) return;
    setConn('down', 'Reconnecting…');
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10_000);
  }
}

function handleSse(block) {
  let type = 'message', data = '';
  for (const line of block.split('\n')) {
    if (line.startsWith('event: ')) type = line.slice(7);
    else if (line.startsWith('data: ')) data += line.slice(6);
  }
  if (!data) return;
  const value = JSON.parse(data);
  if (type === 'deployment') { scheduleRefresh(['succeeded', 'failed', 'aborted', 'rolled-back', 'interrupted'].includes(value.status)); return; }
  addEvent(value);
  scheduleRefresh(['deployment.started', 'deployment.finished', 'rollback', 'release.measured'].includes(value.type));
}

// ───────────────────────────── actions ─────────────────────────────

function confirmAction(text, okLabel) {
  const d = $('#confirm-dialog');
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = okLabel;
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
    d.returnValue = '';
    d.showModal();
    d.querySelector('button[value="cancel"]').focus();
  });
}

async function act(button, path, text, okLabel, done) {
  if (!(await confirmAction(text, okLabel))) return;
  const out = $('#action-result');
  out.className = 'action-result';
  out.textContent = `${okLabel}…`;
  button.disabled = true;
  try {
    const r = await api('POST', path, {});
    out.textContent = done(r);
  } catch (err) {
    if (err instanceof Unauthorised) { askToken('That token was not accepted.'); return; }
    out.className = 'action-result error';
    out.textContent = `${okLabel} failed: ${err.message}`;
  }
  scheduleRefresh(true);
}

$('#btn-rollback').addEventListener('click', (ev) => {
  const s = state.status;
  act(ev.currentTarget, '/rollback', `Switch live traffic from ${s.live?.version} (${s.live?.color}) back to ${s.standby?.version} (${s.standby?.color})?`, 'Roll back',
    (r) => `Rolled back: ${r.live.version} is live on ${r.live.color} (${fmtMs(r.ms)}${r.restarted ? '; the standby had to be started first' : ''}).`);
});
$('#btn-promote').addEventListener('click', (ev) => {
  const d = state.status?.deployment;
  act(ev.currentTarget, '/promote', `Switch live traffic to ${d?.version} on ${d?.color}?`, 'Promote', (r) => `Promoted ${r.deployment.version}; switching.`);
});
$('#btn-abort').addEventListener('click', (ev) => {
  const d = state.status?.deployment;
  act(ev.currentTarget, '/abort', `Abort the deployment of ${d?.version}? Traffic stays where it is and the candidate is stopped.`, 'Abort', (r) => `Aborted ${r.deployment.version}; traffic untouched.`);
});

// ───────────────────────────── start ─────────────────────────────

async function refreshStatus() {
  try {
    state.status = await api('GET', '/status');
    renderEnvironments();
  } catch (err) { onApiError(err); throw err; }
}

let timers = [];
async function start() {
  for (const t of timers) clearInterval(t);
  timers = [];
  try { await pickService(); } catch (err) { onApiError(err); return; }
  try { await refreshStatus(); } catch { return; }
  $('#main').hidden = false;
  $('#sign-out').hidden = false;
  const dlg = $('#token-dialog');
  if (dlg.open) dlg.close();
  // Past switches for the chart markers: the last 15 minutes of the log.
  await refreshReport();
  await Promise.all([refreshDeployment(), refreshStats()]);
  void stream();
  timers.push(setInterval(refreshStats, STATS_POLL_MS));
  timers.push(setInterval(() => { renderEnvironments(); }, 1_000 * 15));
  timers.push(setInterval(refreshReport, REPORT_POLL_MS));
}

if (token()) start(); else askToken();
