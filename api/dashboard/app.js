// Synod's dashboard. Hand-written, no dependencies. Every string that comes
// from the server is put into the page as text (textContent, never
// innerHTML), so a payload or a label holding markup stays inert.
'use strict';

const S = { token: null, key: null, who: null, timer: null, page: null };

// ---- helpers ----------------------------------------------------------

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) {
    if (k === undefined || k === null) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function notice(text, isError) {
  const n = document.getElementById('notice');
  n.textContent = text;
  n.className = isError ? 'error' : '';
  n.hidden = false;
  clearTimeout(notice.t);
  notice.t = setTimeout(() => { n.hidden = true; }, isError ? 8000 : 3000);
}

async function api(method, path, body, extraHeaders) {
  const headers = Object.assign({}, extraHeaders || {});
  if (S.token) headers.Authorization = 'Bearer ' + S.token;
  if (S.key) headers['X-API-Key'] = S.key;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let v = null;
  try { v = await r.json(); } catch (_) { v = null; }
  if (r.status === 401 && S.who) {
    logout('Your session has ended: log in again.');
    throw new Error('session ended');
  }
  if (!r.ok) {
    const e = new Error((v && v.error && v.error.message) || ('HTTP ' + r.status));
    e.status = r.status;
    throw e;
  }
  return { body: v, etag: r.headers.get('ETag') };
}

const isAdmin = () => S.who && S.who.role === 'admin';
const canWrite = () => S.who && (S.who.role === 'admin' || S.who.role === 'user');
const bytes = (n) => (n >= 1048576 ? (n / 1048576).toFixed(1) + ' MiB' : (n / 1024).toFixed(1) + ' KiB');
const ms = (t) => (t ? new Date(t).toISOString().replace('T', ' ').replace('Z', '') : '');

function table(headers, rows) {
  return el('table', {}, el('thead', {}, el('tr', {}, headers.map((h) => el('th', {}, h)))),
    el('tbody', {}, rows));
}

function confirmed(question, action) {
  return async () => {
    if (!window.confirm(question)) return;
    try { await action(); } catch (e) { notice(e.message, true); }
  };
}

// ---- login ------------------------------------------------------------

async function login(ev) {
  ev.preventDefault();
  const f = ev.target;
  const err = document.getElementById('login-error');
  err.textContent = '';
  S.token = null; S.key = null;
  try {
    if (f.key.value.trim()) {
      S.key = f.key.value.trim();
    } else {
      const r = await api('POST', '/login', { username: f.username.value, password: f.password.value });
      S.token = r.body.access_token;
    }
    S.who = (await api('GET', '/whoami')).body;
  } catch (e) {
    S.token = null; S.key = null; S.who = null;
    err.textContent = e.message;
    return;
  }
  f.reset();
  document.getElementById('who').textContent = S.who.subject + ' · ' + S.who.tenant + ' · ' + S.who.role;
  document.getElementById('nav').hidden = false;
  document.getElementById('nav-audit').hidden = !isAdmin();
  document.getElementById('logout').hidden = false;
  route();
}

function logout(message) {
  S.token = null; S.key = null; S.who = null;
  clearInterval(S.timer);
  document.getElementById('nav').hidden = true;
  document.getElementById('logout').hidden = true;
  document.getElementById('who').textContent = '';
  const main = document.getElementById('main');
  main.replaceChildren(loginForm);
  if (message) notice(message, true);
}

let loginForm;

// ---- pages ------------------------------------------------------------

function chart(title, samples, pick, second, more) {
  const w = 300, h = 100;
  const series = [[pick, ''], [second, 'second']].concat(more || []);
  const values = series.filter(([f]) => f).flatMap(([f]) => samples.map(f)).filter((x) => x !== null && x !== undefined);
  const max = Math.max(1e-9, ...values);
  const line = (f) => samples.map((s, i) => {
    const v = f(s);
    const x = samples.length > 1 ? (i / (samples.length - 1)) * w : 0;
    return x.toFixed(1) + ',' + (h - ((v || 0) / max) * h).toFixed(1);
  }).join(' ');
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  for (const [f, cls] of series) {
    if (!f) continue;
    const p = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    p.setAttribute('points', line(f));
    if (cls) p.setAttribute('class', cls);
    svg.append(p);
  }
  const last = samples.length ? pick(samples[samples.length - 1]) : null;
  const legend = (more || []).length ? el('div', { class: 'legend' }, more.map(([, cls, name]) => el('span', { class: cls }, name))) : null;
  return el('div', { class: 'card chart' }, el('h3', {}, title),
    el('div', { class: 'muted' }, 'now: ' + (last === null || last === undefined ? '—' : Number(last).toFixed(2)) + ' · max ' + max.toFixed(2)),
    svg, legend);
}

async function overview(main) {
  const [status, reg, hist] = await Promise.all([
    api('GET', '/cluster/status'), api('GET', '/cluster/nodes?consistency=leader'), api('GET', '/metrics/history'),
  ]);
  const s = status.body;
  const byId = Object.fromEntries(reg.body.nodes.map((n) => [n.id, n]));
  const rows = s.nodes.map((n) => el('tr', { 'data-node': n.id },
    el('td', {}, n.id), el('td', {}, n.id === s.leader_id ? 'leader' : n.role), el('td', {}, n.liveness),
    el('td', {}, n.applied_index), el('td', {}, byId[n.id] ? byId[n.id].lag : ''), el('td', {}, n.http_addr)));
  const samples = hist.body.samples;
  const queued = (x) => Object.values(x.queued || {}).reduce((a, b) => a + b, 0);
  main.replaceChildren(
    el('div', { class: 'card', id: 'cluster' },
      el('h2', {}, 'Cluster'),
      el('p', {}, 'Leader: ', el('strong', { id: 'leader' }, s.leader_id ?? 'none'), ' · term ', s.term,
        ' · commit index ', s.commit_index, ' · applied here ', s.applied_index,
        s.membership_joint ? ' · membership change under way' : ''),
      table(['node', 'role', 'liveness', 'applied', 'lag', 'HTTP'], rows)),
    el('div', { class: 'grid' },
      chart('Tasks submitted / s', samples, (x) => x.submitted_per_s),
      chart('Succeeded (blue) / failed (red) per s', samples, (x) => x.succeeded_per_s, (x) => x.failed_per_s),
      chart('Latency p50 / p99 (s, this node)', samples, (x) => x.latency_p50_s, (x) => x.latency_p99_s),
      queueChart(samples, queued),
      chart('CPU (share of a core, this node)', samples, (x) => x.cpu_share),
      chart('Memory (MiB, this node)', samples, (x) => x.rss_bytes / 1048576)),
    el('p', { class: 'muted' }, `${samples.length} samples, one every ${hist.body.interval_s} s, from this node's memory.`));
}

// Queued tasks in all, and one line for each of the five tenants with the
// most queued in the last sample.
function queueChart(samples, total) {
  const last = samples.length ? samples[samples.length - 1].queued || {} : {};
  const tenants = Object.keys(last).sort((a, b) => last[b] - last[a]).slice(0, 5);
  const more = tenants.map((t, i) => [(x) => (x.queued || {})[t] || 0, 'tenant-' + i, t]);
  return chart('Queued tasks (all, and per tenant)', samples, total, null, more);
}

async function nodes(main) {
  const reg = (await api('GET', '/cluster/nodes?consistency=leader')).body.nodes;
  const action = (id, what, label, cls) => el('button', {
    class: cls || 'secondary', 'data-action': what,
    onclick: confirmed(`${label} node ${id}?`, async () => {
      await api('POST', `/cluster/nodes/${id}/${what}`, {});
      notice(`${label}: node ${id} done`);
      route();
    }),
  }, label);
  const rows = reg.map((n) => el('tr', { 'data-node': n.id },
    el('td', {}, n.id), el('td', {}, n.role), el('td', {}, n.liveness),
    el('td', { class: 'draining' }, n.draining ? 'draining' : ''),
    el('td', {}, Object.entries(n.labels).map(([k, v]) => el('div', {}, k + '=' + v))),
    el('td', {}, n.cpu_load.toFixed(2)), el('td', {}, n.capacity.cpu_cores + ' cores'),
    el('td', {}, isAdmin() ? [
      n.draining ? action(n.id, 'undrain', 'Undrain') : action(n.id, 'drain', 'Drain'),
      n.role === 'learner' ? action(n.id, 'promote', 'Promote') : null,
      n.role === 'voter' ? action(n.id, 'demote', 'Demote') : null,
      n.role !== 'leader' ? action(n.id, 'transfer-leader', 'Make leader') : null,
      action(n.id, 'remove', 'Remove', 'danger'),
      el('button', { class: 'secondary', 'data-action': 'labels', onclick: () => editLabels(n) }, 'Labels'),
    ] : '')));
  main.replaceChildren(el('div', { class: 'card' }, el('h2', {}, 'Nodes'),
    table(['id', 'role', 'liveness', '', 'labels', 'cpu load', 'capacity', ''], rows)));
}

async function editLabels(n) {
  const text = window.prompt('Labels of node ' + n.id + ' as JSON', JSON.stringify(n.labels));
  if (text === null) return;
  try {
    const labels = JSON.parse(text);
    await api('PUT', `/cluster/nodes/${n.id}/labels`, { labels }, { 'If-Match': `"${n.version}"` });
    notice('Labels saved');
  } catch (e) {
    notice(e.status === 412 ? 'Someone changed these labels meanwhile: reload and try again (412).' : e.message, true);
  }
  route();
}

async function tasks(main, params) {
  const q = new URLSearchParams({ limit: '25' });
  for (const k of ['state', 'type', 'cursor']) if (params.get(k)) q.set(k, params.get(k));
  const [list, plugins] = await Promise.all([api('GET', '/tasks?' + q), api('GET', '/plugins/list')]);
  const types = plugins.body.plugins.map((p) => p.name);
  const filter = el('form', { class: 'toolbar', id: 'task-filter', onsubmit: (ev) => {
    ev.preventDefault();
    const f = new URLSearchParams();
    if (ev.target.state.value) f.set('state', ev.target.state.value);
    if (ev.target.type.value) f.set('type', ev.target.type.value);
    location.hash = '#/tasks?' + f;
  } },
  el('label', {}, 'State', el('select', { name: 'state' }, ['', 'queued', 'assigned', 'running', 'succeeded', 'failed', 'cancelled', 'dead_lettered']
    .map((s) => el('option', { value: s, selected: params.get('state') === s }, s || 'any')))),
  el('label', {}, 'Type', el('select', { name: 'type' }, [''].concat(types)
    .map((t) => el('option', { value: t, selected: params.get('type') === t }, t || 'any')))),
  el('button', { type: 'submit' }, 'Filter'));
  const rows = list.body.tasks.map((t) => el('tr', { 'data-task': t.id },
    el('td', {}, el('a', { href: '#/task/' + encodeURIComponent(t.id) }, t.id)), el('td', {}, t.type),
    el('td', { class: 'state state-' + t.state }, t.state), el('td', {}, t.tenant), el('td', {}, ms(t.updated_at_ms))));
  const next = list.body.next_cursor;
  const more = next ? el('a', { href: '#/tasks?' + new URLSearchParams(Object.assign(Object.fromEntries(params), { cursor: next })) }, 'Next page') : null;
  const submit = canWrite() ? el('form', { class: 'card', id: 'submit', onsubmit: submitTask },
    el('h2', {}, 'Submit a task'),
    el('label', {}, 'Type', el('select', { name: 'type' }, types.map((t) => el('option', { value: t }, t)))),
    el('label', {}, 'Payload (JSON)', el('textarea', { name: 'payload' }, '{}')),
    el('button', { type: 'submit' }, 'Submit'), el('p', { class: 'error', id: 'submit-error' })) : null;
  main.replaceChildren(el('div', { class: 'card' }, el('h2', {}, 'Tasks'), filter,
    table(['id', 'type', 'state', 'tenant', 'updated'], rows), more), submit);
  S.timer = setInterval(() => { if (S.page === 'tasks') refreshStates(); }, 2000);
}

async function refreshStates() {
  for (const row of document.querySelectorAll('tr[data-task]')) {
    const cell = row.querySelector('.state');
    if (['succeeded', 'failed', 'cancelled', 'dead_lettered'].includes(cell.textContent)) continue;
    try {
      const t = (await api('GET', `/tasks/${encodeURIComponent(row.dataset.task)}/status`)).body;
      cell.textContent = t.state;
      cell.className = 'state state-' + t.state;
    } catch (_) { /* the next tick tries again */ }
  }
}

async function submitTask(ev) {
  ev.preventDefault();
  const f = ev.target;
  const err = document.getElementById('submit-error');
  err.textContent = '';
  let payload;
  try { payload = JSON.parse(f.payload.value); } catch (e) { err.textContent = 'The payload is not JSON: ' + e.message; return; }
  try {
    const r = (await api('POST', '/tasks/submit', { type: f.type.value, payload })).body;
    notice('Submitted ' + r.id);
    location.hash = '#/task/' + encodeURIComponent(r.id);
  } catch (e) { err.textContent = e.message; }
}

async function task(main, id) {
  const t = (await api('GET', `/tasks/${encodeURIComponent(id)}/status`)).body;
  const res = (await api('GET', `/tasks/${encodeURIComponent(id)}/result`)).body;
  const attempts = t.attempts.map((a, i) => el('li', {},
    `#${i + 1} on node ${a.node_id} (epoch ${a.epoch}): assigned ${ms(a.assigned_at_ms)}`,
    a.started_at_ms ? `, started ${ms(a.started_at_ms)}` : '', a.ended_at_ms ? `, ended ${ms(a.ended_at_ms)}` : '',
    a.lost ? ' — taken back' : '', a.error ? ' — ' + a.error : ''));
  const finished = ['succeeded', 'failed', 'cancelled', 'dead_lettered'].includes(t.state);
  main.replaceChildren(el('div', { class: 'card', id: 'task' },
    el('h2', {}, 'Task ', el('span', { id: 'task-id' }, t.id)),
    el('p', {}, 'State: ', el('strong', { id: 'task-state', class: 'state-' + t.state }, t.state), ' · type ', t.type,
      ' · tenant ', t.tenant, ' · priority ', t.priority, ' · created ', ms(t.created_at_ms)),
    canWrite() && !finished ? el('button', { class: 'danger', id: 'cancel', onclick: confirmed('Cancel task ' + t.id + '?', async () => {
      await api('POST', `/tasks/${encodeURIComponent(t.id)}/cancel`, {});
      notice('Cancel requested');
      route();
    }) }, 'Cancel') : null,
    el('h3', {}, 'Payload'), el('pre', { id: 'task-payload' }, JSON.stringify(t.payload, null, 2)),
    el('h3', {}, 'Result'), el('pre', { id: 'task-result' }, res.finished ? JSON.stringify(res.result ?? res.error, null, 2) : '(not finished)'),
    el('h3', {}, 'Attempts'), timeline(t), el('ol', { class: 'timeline' }, attempts)));
  if (!finished) S.timer = setInterval(() => { if (S.page === 'task') route(); }, 1000);
}

// One row per attempt from the task's creation: waiting (assigned, not yet
// started) in grey, running in blue, then green/red/orange by its outcome.
function timeline(t) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('id', 'attempts-timeline');
  if (!t.attempts.length) return svg;
  const row = 22, left = 90, w = 600, now = Date.now();
  const t0 = t.created_at_ms;
  const t1 = Math.max(t0 + 1, ...t.attempts.map((a) => a.ended_at_ms || now));
  const x = (v) => left + ((Math.min(v, t1) - t0) / (t1 - t0)) * (w - left - 10);
  svg.setAttribute('viewBox', `0 0 ${w} ${row * t.attempts.length + 20}`);
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  t.attempts.forEach((a, i) => {
    const y = i * row + 4;
    add('text', { x: 0, y: y + 13, class: 'label' }, `#${i + 1} node ${a.node_id}`);
    const start = a.started_at_ms || a.ended_at_ms || now;
    add('rect', { x: x(a.assigned_at_ms), y, width: Math.max(1, x(start) - x(a.assigned_at_ms)), height: 16, class: 'waiting' });
    if (a.started_at_ms) {
      const outcome = !a.ended_at_ms ? 'running' : a.lost ? 'lost' : a.error ? 'failed' : 'ok';
      const bar = add('rect', { x: x(a.started_at_ms), y, width: Math.max(2, x(a.ended_at_ms || now) - x(a.started_at_ms)), height: 16, class: outcome });
      const title = document.createElementNS(NS, 'title');
      title.textContent = `${outcome}: ${((a.ended_at_ms || now) - a.started_at_ms)} ms` + (a.error ? ' — ' + a.error : '');
      bar.append(title);
    }
  });
  add('text', { x: left, y: row * t.attempts.length + 16, class: 'label' }, ms(t0));
  add('text', { x: w - 10, y: row * t.attempts.length + 16, class: 'label', 'text-anchor': 'end' }, `+${t1 - t0} ms`);
  return svg;
}

async function plugins(main) {
  const list = (await api('GET', '/plugins/list')).body.plugins;
  const unload = (p) => el('button', {
    class: 'danger', 'data-action': 'unload',
    onclick: confirmed(`Unload plugin ${p.name} on every node? Its queued tasks fail.`, async () => {
      await api('POST', `/plugins/${encodeURIComponent(p.name)}/unload`, {});
      notice(`Plugin ${p.name} unloaded`);
      route();
    }),
  }, 'Unload');
  main.replaceChildren(el('div', { class: 'card' }, el('h2', {}, 'Plugins'),
    table(['name', 'kind', 'version', 'ready on nodes', 'description', ''], list.map((p) => el('tr', { 'data-plugin': p.name },
      el('td', {}, p.name), el('td', {}, p.kind), el('td', {}, p.version), el('td', {}, (p.nodes_ready || []).join(', ')),
      el('td', {}, p.description), el('td', {}, isAdmin() && p.loaded_at_ms ? unload(p) : ''))))),
  isAdmin() ? loadPluginForm() : null);
}

function loadPluginForm() {
  const kind = el('select', { name: 'kind', onchange: (ev) => {
    const wasm = ev.target.value === 'wasm';
    document.getElementById('plugin-module').hidden = !wasm;
    document.getElementById('plugin-command').hidden = wasm;
  } }, el('option', { value: 'wasm' }, 'WASM module (.wasm or .wat)'), el('option', { value: 'subprocess' }, 'subprocess (an executable in plugins.dir)'));
  return el('form', { class: 'card', id: 'load-plugin', onsubmit: async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const manifest = { name: f.name.value.trim(), version: f.version.value.trim(), description: f.description.value };
    const body = { manifest };
    try {
      if (f.kind.value === 'wasm') {
        const file = f.module.files[0];
        if (!file) throw new Error('pick a .wasm or .wat file');
        const bytes = new Uint8Array(await file.arrayBuffer());
        let bin = '';
        for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
        body.module_base64 = btoa(bin);
      } else {
        manifest.kind = 'subprocess';
        manifest.command = f.command.value.trim();
      }
      const r = (await api('POST', '/plugins/load', body)).body;
      notice(`Loaded ${r.name} ${r.version}`);
      route();
    } catch (e) { notice(e.message, true); }
  } },
  el('h2', {}, 'Load a plugin'),
  el('div', { class: 'toolbar' },
    el('label', {}, 'Kind', kind),
    el('label', {}, 'Name', el('input', { name: 'name', required: true, size: 16 })),
    el('label', {}, 'Version', el('input', { name: 'version', required: true, size: 8 })),
    el('label', {}, 'Description', el('input', { name: 'description', size: 30 })),
    el('label', { id: 'plugin-module' }, 'Module', el('input', { name: 'module', type: 'file', accept: '.wasm,.wat' })),
    el('label', { id: 'plugin-command', hidden: true }, 'Command', el('input', { name: 'command', size: 20 })),
    el('button', { type: 'submit' }, 'Load')));
}

async function collections(main) {
  const list = (await api('GET', '/collections')).body.collections;
  const search = el('form', { class: 'card', id: 'search', onsubmit: async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const body = { collection: f.collection.value, top_k: Number(f.top_k.value) || 10 };
    const text = f.query.value.trim();
    try {
      if (text.startsWith('[')) body.vector = JSON.parse(text); else body.text = text;
      const r = (await api('POST', '/vector/search', body)).body;
      document.getElementById('hits').replaceChildren(table(['id', 'score', 'metadata'], r.results.map((h) => el('tr', {},
        el('td', {}, JSON.stringify(h.id)), el('td', {}, h.score.toFixed(4)), el('td', {}, JSON.stringify(h.metadata))))));
    } catch (e) { notice(e.message, true); }
  } },
  el('h2', {}, 'Search'),
  el('div', { class: 'toolbar' },
    el('label', {}, 'Collection', el('select', { name: 'collection' }, list.map((c) => el('option', { value: c.name }, c.name)))),
    el('label', {}, 'Text, or a vector as [..]', el('input', { name: 'query', size: 40 })),
    el('label', {}, 'Top k', el('input', { name: 'top_k', value: '10', size: 4 })),
    el('button', { type: 'submit' }, 'Search')),
  el('div', { id: 'hits' }));
  main.replaceChildren(el('div', { class: 'card' }, el('h2', {}, 'Collections'),
    table(['name', 'dimension', 'metric', 'index', 'points', 'growing', 'segments', 'tombstones', 'memory (this node)', 'vectorizer', 'backend'],
      list.map((c) => {
        const s = c.index_stats;
        return el('tr', { 'data-collection': c.name },
          el('td', {}, c.name), el('td', {}, c.dimension), el('td', {}, c.metric), el('td', {}, c.index), el('td', {}, c.points),
          el('td', {}, s ? s.growing : ''), el('td', {}, s ? s.segments : ''), el('td', { class: 'tombstones' }, s ? s.tombstones : ''),
          el('td', {}, s ? bytes(s.bytes) : ''),
          el('td', {}, c.vectorizer || ''), el('td', {}, c.backend ? c.backend.provider + ' (' + c.backend.kind + ')' : ''));
      }))),
  list.length ? search : null);
}

async function access(main) {
  const keys = (await api('GET', '/apikeys')).body.keys || [];
  const created = el('pre', { id: 'new-key', hidden: true });
  const keyForm = canWrite() ? el('form', { class: 'toolbar', id: 'create-key', onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const f = ev.target;
      const req = { name: f.name.value };
      if (f.role.value) req.role = f.role.value;
      if (Number(f.days.value) > 0) req.expires_in = Math.round(Number(f.days.value) * 86400);
      const k = (await api('POST', '/apikeys', req)).body;
      await access(main);
      const shown = document.getElementById('new-key');
      shown.hidden = false;
      shown.textContent = 'Shown once, copy it now: ' + k.key;
    } catch (e) { notice(e.message, true); }
  } },
  el('label', {}, 'New API key named', el('input', { name: 'name', value: 'dashboard' })),
  el('label', {}, 'Role', el('select', { name: 'role' }, ['', 'reader', 'user', 'admin'].map((r) => el('option', { value: r }, r || 'mine')))),
  el('label', {}, 'Expires in days', el('input', { name: 'days', size: 4, placeholder: 'never' })),
  el('button', { type: 'submit' }, 'Create')) : null;
  const revoke = (k) => el('button', { class: 'danger', 'data-action': 'revoke', onclick: confirmed(`Revoke API key ${k.name} (${k.id})?`, async () => {
    await api('DELETE', `/apikeys/${encodeURIComponent(k.id)}`);
    notice('Key revoked');
    route();
  }) }, 'Revoke');
  const parts = [el('div', { class: 'card' }, el('h2', {}, 'API keys'), keyForm, created,
    table(['id', 'name', 'tenant', 'owner', 'role', 'expires', 'last used', ''], keys.map((k) => el('tr', { 'data-key': k.id },
      el('td', {}, k.id), el('td', {}, k.name), el('td', {}, k.tenant), el('td', {}, k.owner), el('td', {}, k.role),
      el('td', {}, ms(k.expires_at_ms)), el('td', {}, ms(k.last_used_ms)),
      el('td', {}, k.revoked_at_ms ? 'revoked ' + ms(k.revoked_at_ms) : revoke(k))))))];
  if (isAdmin()) {
    const [users, tenants] = await Promise.all([api('GET', '/users'), api('GET', '/tenants')]);
    parts.push(usersCard(users.body.users || [], (tenants.body.tenants || []).map((t) => t.name)));
    parts.push(tenantsCard(tenants.body.tenants || []));
  }
  main.replaceChildren(...parts);
}

function usersCard(users, tenants) {
  const roles = ['reader', 'user', 'admin'];
  const change = (u, what) => async () => {
    try {
      let body;
      if (what === 'password') {
        const pw = window.prompt(`New password for ${u.username} (their API keys are revoked)`);
        if (!pw) return;
        body = { password: pw };
      } else {
        const role = window.prompt(`Role of ${u.username}: reader, user or admin`, u.role);
        if (!role || role === u.role) return;
        body = { role };
      }
      await api('PUT', `/users/${encodeURIComponent(u.username)}`, body);
      notice(`User ${u.username} changed`);
      route();
    } catch (e) { notice(e.message, true); }
  };
  const rows = users.map((u) => el('tr', { 'data-user': u.username },
    el('td', {}, u.username), el('td', {}, u.tenant), el('td', {}, u.role), el('td', {}, ms(u.created_at_ms)),
    el('td', {},
      el('button', { class: 'secondary', 'data-action': 'role', onclick: change(u, 'role') }, 'Role'),
      el('button', { class: 'secondary', 'data-action': 'password', onclick: change(u, 'password') }, 'Password'),
      u.username === S.who.subject ? null : el('button', { class: 'danger', 'data-action': 'delete', onclick: confirmed(`Delete user ${u.username}? Their API keys are revoked.`, async () => {
        await api('DELETE', `/users/${encodeURIComponent(u.username)}`);
        notice(`User ${u.username} deleted`);
        route();
      }) }, 'Delete'))));
  const form = el('form', { class: 'toolbar', id: 'create-user', onsubmit: async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    try {
      await api('POST', '/users', { username: f.username.value.trim(), password: f.password.value, tenant: f.tenant.value, role: f.role.value });
      notice(`User ${f.username.value} created`);
      route();
    } catch (e) { notice(e.message, true); }
  } },
  el('label', {}, 'Username', el('input', { name: 'username', required: true, size: 12 })),
  el('label', {}, 'Password', el('input', { name: 'password', type: 'password', required: true, size: 12, autocomplete: 'new-password' })),
  el('label', {}, 'Tenant', el('select', { name: 'tenant' }, [...new Set([S.who.tenant, 'default', ...tenants])]
    .map((t) => el('option', { value: t, selected: t === S.who.tenant }, t)))),
  el('label', {}, 'Role', el('select', { name: 'role' }, roles.map((r) => el('option', { value: r, selected: r === 'user' }, r)))),
  el('button', { type: 'submit' }, 'Create user'));
  return el('div', { class: 'card', id: 'users' }, el('h2', {}, 'Users'), form,
    table(['name', 'tenant', 'role', 'created', ''], rows));
}

function tenantsCard(tenants) {
  const form = el('form', { class: 'toolbar', id: 'create-tenant', onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await api('POST', '/tenants', { name: ev.target.name.value.trim() });
      notice(`Tenant ${ev.target.name.value} created`);
      route();
    } catch (e) { notice(e.message, true); }
  } }, el('label', {}, 'New tenant', el('input', { name: 'name', required: true, size: 16 })), el('button', { type: 'submit' }, 'Create tenant'));
  return el('div', { class: 'card', id: 'tenants' }, el('h2', {}, 'Tenants'), form,
    table(['name', 'created'], tenants.map((t) => el('tr', { 'data-tenant': t.name }, el('td', {}, t.name), el('td', {}, ms(t.created_at_ms))))));
}

async function audit(main) {
  await renderAudit(main);
  S.timer = setInterval(() => { if (S.page === 'audit') renderAudit(main).catch(() => {}); }, 5000);
}

async function renderAudit(main) {
  const a = (await api('GET', '/audit?limit=200')).body;
  main.replaceChildren(el('div', { class: 'card', id: 'audit' }, el('h2', {}, 'Audit'),
    el('p', { class: 'muted' }, `The newest events node ${a.node_id} saw (it keeps ${a.capacity}); each node audits what was done through it. Refreshed every 5 s.`),
    table(['#', 'time', 'event', 'who', 'what'], a.events.map((e) => el('tr', { 'data-seq': e.seq },
      el('td', {}, e.seq), el('td', {}, ms(e.at_ms)), el('td', { class: 'event' }, e.event), el('td', {}, e.who), el('td', {}, e.what))))));
}

const PAGES = { overview, nodes, tasks, plugins, collections, access, audit };

async function route() {
  if (!S.who) return;
  clearInterval(S.timer);
  const hash = location.hash.replace(/^#\//, '') || 'overview';
  const [path, query] = hash.split('?');
  const params = new URLSearchParams(query || '');
  const main = document.getElementById('main');
  let page = path;
  let arg = null;
  if (path.startsWith('task/')) { page = 'task'; arg = decodeURIComponent(path.slice(5)); }
  S.page = page;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === page);
  try {
    if (page === 'task') await task(main, arg);
    else await (PAGES[page] || overview)(main, params);
  } catch (e) {
    if (S.who) main.replaceChildren(el('div', { class: 'card error', id: 'page-error' }, e.message));
  }
}

document.addEventListener('DOMContentLoaded', () => {
  loginForm = document.getElementById('login');
  loginForm.addEventListener('submit', login);
  document.getElementById('logout').addEventListener('click', () => logout());
  window.addEventListener('hashchange', route);
});
