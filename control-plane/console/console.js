// tenantctl console: a page over the operator API (/v1), signed in with an operator token.
// Everything it shows comes from the API, with the token's own rights: a read_only token sees
// everything and its change buttons are not offered (the API refuses them anyway).
// Text from the API is only ever set as text (never parsed as HTML).
'use strict';

const STATUSES = ['provisioning', 'active', 'suspended', 'deprovisioning', 'deleted', 'failed'];

// ---- sign in and the frame ----------------------------------------------------------------

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  session.token = null;
  session.me = null;
  location.hash = '#/signin';
  if (message) flash(message, true);
}

function frame() {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  nav.hidden = !session.me;
  document.getElementById('nav-tokens').hidden = !can('admin');
  put(who);
  if (session.me) {
    append(who, [
      h('span', {}, session.me.name, ' · ', h('span', { class: 'scope' }, session.me.scope.replace('_', '-'))),
      h('button', { type: 'button', class: 'secondary', onclick: () => signOut() }, 'Sign out'),
    ]);
  }
  const page = location.hash.split('?')[0].split('/')[1] || '';
  for (const link of nav.querySelectorAll('a')) {
    if (link.getAttribute('href') === `#/${page}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function signInPage(main) {
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const form = h('form', {
    class: 'signin panel',
    onsubmit: async (event) => {
      event.preventDefault();
      session.token = input.value.trim();
      try {
        session.me = await api('GET', '/v1/whoami');
        sessionStorage.setItem(TOKEN_KEY, session.token);
        clearFlash();
        location.hash = '#/overview';
      } catch (error) {
        session.token = null;
        flash(`Sign-in failed: ${error.message}`, true);
      }
    },
  },
  h('h1', {}, 'Sign in'),
  h('p', { class: 'muted' }, 'With an operator token (', h('code', {}, 'tenantctl tokens create'), '). It is kept in this tab only, until you close it or sign out.'),
  h('p', { class: 'field' }, h('label', { for: 'token' }, 'Operator token'), input),
  h('button', { type: 'submit' }, 'Sign in'));
  put(main, form);
  input.focus();
}

// ---- overview ----------------------------------------------------------------------------

function bars(rows, opts) {
  const max = Math.max(1, ...rows.map((r) => r.max || r.value));
  return h('div', { class: 'bars', role: 'list' }, rows.map((r) => {
    const fill = h('div', { class: `bar-fill ${r.cls || ''}` });
    fill.style.width = `${Math.min(100, (100 * r.value) / (r.max || max))}%`;
    return h('div', { class: 'bar-row', role: 'listitem' },
      h('span', {}, r.label),
      h('div', { class: 'bar-track', 'aria-hidden': 'true' }, fill),
      h('span', { class: 'num' }, r.text || String(r.value)));
  }), opts && opts.empty && !rows.length ? h('p', { class: 'muted' }, opts.empty) : null);
}

function sumBy(counts, key) {
  const out = new Map();
  for (const c of counts) out.set(c[key], (out.get(c[key]) || 0) + c.tenants);
  return [...out.entries()].sort((a, b) => b[1] - a[1]);
}

const SERIES_COLOURS = ['#0b5cad', '#176b2c', '#8a5300', '#b01c1c', '#6b3fa0', '#00707a'];

// Tenants by `key` (status or plan) hour by hour, as lines; with a table for screen readers.
function historyChart(history, now, key) {
  const points = history.map((s) => ({ at: new Date(s.hour), counts: s.counts }));
  points.push({ at: new Date(), counts: now });
  const names = [...new Set(points.flatMap((p) => p.counts.map((c) => c[key])))].sort();
  const series = names.map((name) => points.map((p) => p.counts.filter((c) => c[key] === name).reduce((n, c) => n + c.tenants, 0)));
  const width = 560;
  const height = 180;
  const pad = 30;
  const max = Math.max(1, ...series.flat());
  const t0 = points[0].at.getTime();
  const span = Math.max(1, points[points.length - 1].at.getTime() - t0);
  const x = (p) => pad + ((width - 2 * pad) * (p.at.getTime() - t0)) / span;
  const y = (v) => height - pad - ((height - 2 * pad) * v) / max;
  const lines = series.map((values, i) => svg('polyline', {
    fill: 'none', stroke: SERIES_COLOURS[i % SERIES_COLOURS.length], 'stroke-width': 2,
    points: values.map((v, j) => `${x(points[j]).toFixed(1)},${y(v).toFixed(1)}`).join(' '),
  }));
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `Tenants by ${key} over time` },
    svg('line', { class: 'axis', x1: pad, y1: height - pad, x2: width - pad, y2: height - pad }),
    svg('line', { class: 'axis', x1: pad, y1: pad, x2: pad, y2: height - pad }),
    svg('text', { x: 2, y: pad + 4 }, String(max)),
    svg('text', { x: 2, y: height - pad + 4 }, '0'),
    svg('text', { x: pad, y: height - 8 }, points[0].at.toLocaleDateString()),
    svg('text', { x: width - pad - 30, y: height - 8 }, 'now'),
    lines);
  const legend = h('div', { class: 'legend', 'aria-hidden': 'true' }, names.map((name, i) => {
    const swatch = h('i');
    swatch.style.background = SERIES_COLOURS[i % SERIES_COLOURS.length];
    return h('span', {}, swatch, name);
  }));
  const summary = h('table', { class: 'sr-only' },
    h('caption', {}, `Tenants by ${key}, ${points.length} points from ${points[0].at.toISOString()} to now`),
    h('tbody', {}, names.map((name, i) => h('tr', {}, h('th', { scope: 'row' }, name), h('td', {}, series[i].join(', '))))));
  return h('div', { class: 'chart' }, chart, legend, summary);
}

async function overviewPage(main) {
  const [fleet, clusters, routers] = await Promise.all([
    api('GET', '/v1/fleet?days=14'),
    api('GET', '/v1/clusters'),
    api('GET', '/v1/routers/pools'),
  ]);
  const live = fleet.counts.reduce((n, c) => n + c.tenants, 0);
  const known = fleet.schema_versions.map((v) => v.version);
  const withTarget = fleet.target_version === null || known.includes(fleet.target_version)
    ? fleet.schema_versions
    : [...fleet.schema_versions, { version: fleet.target_version, tenants: 0 }];
  const versions = withTarget.map((v) => ({
    label: v.version === null ? 'none yet' : `V${v.version}${v.version === fleet.target_version ? ' (target)' : ''}`,
    value: v.tenants,
    cls: v.version === fleet.target_version ? 'target' : '',
  }));
  const clusterBars = clusters.map((c) => {
    const share = c.capacity ? c.tenants / c.capacity : 1;
    return {
      label: c.draining ? `${c.name} (draining)` : c.name,
      value: c.tenants,
      max: Math.max(1, c.capacity),
      text: `${c.tenants} / ${c.capacity}`,
      cls: share >= 0.95 ? 'full' : share >= 0.8 ? 'hot' : '',
    };
  });
  put(main,
    h('h1', {}, 'Overview'),
    h('p', { class: 'muted' }, `${live} live tenants; migrations directory at ${fleet.target_version === null ? 'unknown' : `V${fleet.target_version}`}.`),
    h('div', { class: 'grid' },
      h('section', { class: 'panel', 'aria-labelledby': 'h-versions' },
        h('h2', { id: 'h-versions' }, 'Tenants by schema version'),
        bars(versions, { empty: 'No active or suspended tenants.' })),
      h('section', { class: 'panel', 'aria-labelledby': 'h-status' },
        h('h2', { id: 'h-status' }, 'Tenants by status'),
        bars(sumBy(fleet.counts, 'status').map(([label, value]) => ({ label, value })), { empty: 'No tenants.' })),
      h('section', { class: 'panel', 'aria-labelledby': 'h-plan' },
        h('h2', { id: 'h-plan' }, 'Tenants by plan'),
        bars(sumBy(fleet.counts, 'plan').map(([label, value]) => ({ label, value })), { empty: 'No tenants.' })),
      h('section', { class: 'panel', 'aria-labelledby': 'h-clusters' },
        h('h2', { id: 'h-clusters' }, 'Cluster load against capacity'),
        bars(clusterBars, { empty: 'No clusters registered.' }))),
    h('div', { class: 'grid' },
      h('section', { class: 'panel', 'aria-labelledby': 'h-history-status' },
        h('h2', { id: 'h-history-status' }, 'Tenants by status, last 14 days'),
        historyChart(fleet.history, fleet.counts, 'status')),
      h('section', { class: 'panel', 'aria-labelledby': 'h-history-plan' },
        h('h2', { id: 'h-history-plan' }, 'Tenants by plan, last 14 days'),
        historyChart(fleet.history, fleet.counts, 'plan'))),
    h('h2', {}, 'Routers'),
    routersSection(routers.routers));
  every(10000, () => refresh(overviewPage));
}

function routersSection(routers) {
  if (!routers.length) {
    return h('p', { class: 'muted' }, 'No routers configured: start ', h('code', {}, 'tenantctl serve'), ' with TENANTCTL_ROUTERS (their admin listeners) to see their pools here.');
  }
  return h('div', { class: 'grid' }, routers.map((r) => {
    if (r.error || !r.budget || !Array.isArray(r.pools)) {
      const why = r.error ? r.error.message : 'an answer without a budget or pools';
      return h('section', { class: 'panel' }, h('h2', {}, r.router), h('p', { class: 'error' }, `No answer: ${why}`));
    }
    const b = r.budget;
    const share = b.max_connections ? b.connections / b.max_connections : 0;
    const pools = [...r.pools].sort((p, q) => (q.server_active + q.server_idle) - (p.server_active + p.server_idle));
    return h('section', { class: 'panel router' },
      h('h2', {}, r.router),
      bars([{
        label: 'connections',
        value: b.connections,
        max: Math.max(1, b.max_connections),
        text: `${b.connections} / ${b.max_connections}`,
        cls: share >= 0.95 ? 'full' : share >= 0.8 ? 'hot' : '',
      }]),
      h('p', { class: 'muted' }, `${b.server_active} active, ${b.server_idle} idle, ${b.clients_waiting} waiting, ${b.pools} pools`),
      table([['Tenant'], ['Access'], ['Door'], ['Size', 'num'], ['Active', 'num'], ['Idle', 'num'], ['Waiting', 'num']],
        pools.slice(0, 10).map((p) => [p.tenant, p.access, p.door, p.pool_size, p.server_active, p.server_idle, p.clients_waiting]),
        'No pools open.'));
  }));
}

// ---- tenants -----------------------------------------------------------------------------

function query() {
  return new URLSearchParams(location.hash.split('?')[1] || '');
}

async function tenantsPage(main) {
  const q = query();
  const clusters = await api('GET', '/v1/clusters');
  const params = new URLSearchParams();
  for (const key of ['q', 'status', 'plan', 'cluster', 'schema_version']) {
    if (q.get(key)) params.set(key, q.get(key));
  }
  params.set('limit', '100');
  const rows = h('tbody');
  const more = h('p');
  const load = async (cursor) => {
    const page = await api('GET', `/v1/tenants?${params}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    for (const t of page.tenants) {
      rows.append(h('tr', {},
        h('td', {}, h('a', { href: `#/tenants/${t.slug}` }, t.slug)),
        h('td', {}, t.name),
        h('td', {}, badge(t.status)),
        h('td', {}, t.plan),
        h('td', {}, t.cluster),
        h('td', { class: 'num' }, t.schema_version === null ? '—' : `V${t.schema_version}`),
        h('td', {}, when(t.created_at))));
    }
    put(more, page.next_cursor
      ? h('button', { type: 'button', class: 'secondary', onclick: () => load(page.next_cursor) }, 'Load more')
      : (rows.children.length ? h('span', { class: 'muted' }, `${rows.children.length} tenants.`) : h('span', {}, 'No tenants found.')));
  };
  const field = (label, control) => h('label', {}, label, control);
  const select = (name, options) => h('select', { name },
    h('option', { value: '' }, 'any'),
    options.map((o) => h('option', { value: o, selected: q.get(name) === o }, o)));
  const filters = h('form', {
    class: 'inline', role: 'search', 'aria-label': 'Filter tenants',
    onsubmit: (event) => {
      event.preventDefault();
      const data = new URLSearchParams();
      for (const [key, value] of new FormData(event.target)) if (value) data.set(key, value);
      location.hash = `#/tenants?${data}`;
    },
  },
  field('Search slug or name', h('input', { name: 'q', type: 'search', value: q.get('q') || '' })),
  field('Status', select('status', STATUSES)),
  field('Plan', h('input', { name: 'plan', value: q.get('plan') || '', size: 10 })),
  field('Cluster', select('cluster', clusters.map((c) => c.name))),
  field('Schema version', h('input', { name: 'schema_version', type: 'number', min: 0, value: q.get('schema_version') || '', size: 5 })),
  h('button', { type: 'submit' }, 'Filter'));
  put(main,
    h('h1', {}, 'Tenants'),
    filters,
    h('table', {},
      h('thead', {}, h('tr', {}, ['Slug', 'Name', 'Status', 'Plan', 'Cluster', 'Version', 'Created'].map((c) => h('th', { scope: 'col' }, c)))),
      rows),
    more,
    can('operator') ? createTenantForm() : null);
  await load(null);
}

function createTenantForm() {
  return h('section', { 'aria-labelledby': 'h-create' },
    h('h2', { id: 'h-create' }, 'Create a tenant'),
    h('form', {
      class: 'inline',
      'aria-labelledby': 'h-create',
      onsubmit: async (event) => {
        event.preventDefault();
        const data = Object.fromEntries([...new FormData(event.target)].filter(([, v]) => v));
        try {
          const tenant = await api('POST', '/v1/tenants', data);
          flash(`Tenant ${tenant.slug} is being provisioned.`);
          location.hash = `#/tenants/${tenant.slug}`;
        } catch (error) {
          flash(`Create failed: ${error.message}`, true);
        }
      },
    },
    h('label', {}, 'Slug', h('input', { name: 'slug', required: true, pattern: '[a-z][a-z0-9\\-]{2,62}', title: '3-63 of a-z, 0-9 and -, starting with a letter' })),
    h('label', {}, 'Plan', h('input', { name: 'plan', required: true, size: 10 })),
    h('label', {}, 'Name (optional)', h('input', { name: 'name' })),
    h('button', { type: 'submit' }, 'Create tenant')));
}

// Asks to confirm a dangerous change by typing `word`; resolves to whether it was confirmed.
function confirmByTyping(title, explanation, word) {
  return new Promise((resolve) => {
    const input = h('input', { id: 'confirm-word', autocomplete: 'off' });
    const go = h('button', { type: 'submit', class: 'danger', disabled: true }, title);
    input.addEventListener('input', () => { go.disabled = input.value !== word; });
    const dialog = h('dialog', { 'aria-labelledby': 'confirm-title' },
      h('form', { method: 'dialog' },
        h('h2', { id: 'confirm-title' }, title),
        h('p', {}, explanation),
        h('p', { class: 'field' }, h('label', { for: 'confirm-word' }, `Type ${word} to confirm`), input),
        h('div', { class: 'actions' },
          go,
          h('button', { type: 'button', class: 'secondary', onclick: () => dialog.close('cancel') }, 'Cancel'))));
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue !== 'cancel' && input.value === word);
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
}

async function tenantPage(main, slug) {
  const [tenant, domains, audit, clusters, moves] = await Promise.all([
    api('GET', `/v1/tenants/${encodeURIComponent(slug)}`),
    api('GET', `/v1/tenants/${encodeURIComponent(slug)}/domains`).catch(() => []),
    api('GET', `/v1/audit?tenant=${encodeURIComponent(slug)}&limit=50`),
    api('GET', '/v1/clusters'),
    api('GET', `/v1/tenants/${encodeURIComponent(slug)}/moves`).catch(() => []),
  ]);
  const path = `/v1/tenants/${encodeURIComponent(slug)}`;
  const facts = [
    ['Status', badge(tenant.status)],
    ['Plan', tenant.plan],
    ['Isolation', tenant.isolation],
    ['Cluster', tenant.cluster],
    ...(tenant.database ? [['Database', h('code', {}, tenant.database)]] : []),
    ['Schema', h('code', {}, tenant.schema)],
    ['Role', h('code', {}, tenant.role)],
    ['Schema version', tenant.schema_version === null ? '—' : `V${tenant.schema_version}`],
    ['Pool', `${tenant.pool_size} connections, ${tenant.pool_mode} pooling`],
    ['Rate limit', tenant.rate_limit_per_second ? `${tenant.rate_limit_per_second} requests/s` : 'none'],
    ['Statement timeout', tenant.statement_timeout_ms ? `${tenant.statement_timeout_ms} ms` : 'none'],
    ['Created', when(tenant.created_at)],
    ['Updated', when(tenant.updated_at)],
  ];
  if (tenant.drop_after) facts.push(['Data dropped after', when(tenant.drop_after)]);
  if (tenant.failed_step) facts.push(['Failed at', tenant.failed_step]);
  if (tenant.last_error) facts.push(['Last error', h('span', { class: 'error' }, tenant.last_error)]);
  const connection = [
    ['Host', h('code', {}, tenant.host)],
    ['HTTP (SQL over HTTP)', h('code', {}, `https://${tenant.host}/sql`)],
    ['PostgreSQL', h('span', {}, 'through a router\'s PostgreSQL listener, naming the tenant by the host as TLS server name (SNI) or by ', h('code', {}, `options=-c tenant=${tenant.slug}`))],
    ['Credentials', h('span', {}, 'kept in the secret store, never shown here (', h('code', {}, `tenantctl tenants connection-string ${tenant.slug}`), ')')],
  ];
  put(main,
    h('p', {}, h('a', { href: '#/tenants' }, '← Tenants')),
    h('h1', {}, tenant.name, ' ', h('span', { class: 'muted' }, `(${tenant.slug})`), ' ', badge(tenant.status)),
    can('operator') ? tenantActions(tenant, path, clusters) : null,
    h('div', { class: 'grid' },
      h('section', { class: 'panel', 'aria-labelledby': 'h-facts' },
        h('h2', { id: 'h-facts' }, 'Details'),
        h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))),
      h('section', { class: 'panel', 'aria-labelledby': 'h-conn' },
        h('h2', { id: 'h-conn' }, 'Connection'),
        h('dl', { class: 'facts' }, connection.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
        h('h2', {}, 'Domains'),
        table([['Host'], ['Kind']], domains.map((d) => [d.host, d.kind]), 'No domains.'))),
    movesSection(moves, path),
    h('h2', {}, 'Profile'),
    h('pre', { 'aria-label': 'Profile (JSON)' }, JSON.stringify(tenant.config, null, 2)),
    h('h2', {}, 'Audit trail'),
    table([['When'], ['Who'], ['What'], ['Detail']],
      audit.map((e) => [when(e.at), e.actor, e.action, h('code', {}, JSON.stringify(e.detail))]),
      'Nothing recorded yet.'));
  // Changes in progress are watched closely; otherwise the page still follows jobs' effects.
  const settling = ['provisioning', 'deprovisioning'].includes(tenant.status)
    || moves.some((m) => m.state === 'running');
  every(settling ? 1000 : 5000, () => refresh((m) => tenantPage(m, slug)));
}

// A move's steps in order, by how it copies; past `locked` it only goes forward.
const MOVE_STEPS = {
  replication: ['target', 'published', 'subscribed', 'copied', 'locked', 'switched'],
  dump: ['target', 'locked', 'switched'],
};
const MOVE_STEP_NAMES = {
  target: 'target built', published: 'published', subscribed: 'subscribed (copying)',
  copied: 'copied, catching up', locked: 'source locked', switched: 'switched, cleaning up',
};

function moveProgress(move) {
  const steps = MOVE_STEPS[move.method] || MOVE_STEPS.replication;
  const total = steps.length + 1;
  const reached = move.state === 'done' ? total : (move.step ? steps.indexOf(move.step) + 1 : 0);
  const label = move.state === 'done' ? 'done' : (move.step ? MOVE_STEP_NAMES[move.step] || move.step : 'starting');
  const bar = h('div', {
    class: 'progress small', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': total,
    'aria-valuenow': reached, 'aria-label': `Move ${move.id}: step ${reached} of ${total}`,
  }, h('div', { class: move.state === 'failed' ? 'failed' : 'done' }));
  bar.children[0].style.width = `${(100 * reached) / total}%`;
  return h('div', { 'data-move-step': move.step || '' }, bar, h('span', {}, `${reached}/${total} ${label}`));
}

function movesSection(moves, path) {
  const place = (p) => `${p.cluster}${p.database ? `/${p.database}` : ''} (${p.isolation})`;
  const running = moves.find((m) => m.state === 'running');
  const abortable = running && !['locked', 'switched'].includes(running.step) && !running.abort_requested;
  return h('section', { 'aria-labelledby': 'h-moves' },
    h('h2', { id: 'h-moves' }, 'Moves'),
    can('operator') && abortable
      ? h('p', {}, h('button', {
        type: 'button', class: 'danger',
        onclick: () => act('Abort move', () => api('POST', `${path}/moves/abort`)),
      }, 'Abort move'), h('span', { class: 'muted' }, ' until its source is locked; what it built is removed'))
      : null,
    table([['Started'], ['State'], ['Progress'], ['Method'], ['From'], ['To'], ['Pause', 'num'], ['Error']],
      moves.map((m) => [when(m.created_at), badge(m.abort_requested && m.state === 'running' ? 'aborting' : m.state),
        moveProgress(m), m.method, place(m.from), place(m.to),
        m.pause_ms === null ? '—' : `${m.pause_ms} ms`, m.last_error ? h('span', { class: 'error' }, m.last_error) : '']),
      'Never moved.'));
}

function tenantActions(tenant, path, clusters) {
  const buttons = [];
  const post = (label, suffix, body) => act(label, () => api('POST', `${path}${suffix}`, body));
  if (tenant.status === 'active') {
    buttons.push(h('button', { type: 'button', onclick: () => post('Suspend', '/suspend') }, 'Suspend'));
  }
  if (tenant.status === 'suspended') {
    buttons.push(h('button', { type: 'button', onclick: () => post('Resume', '/resume') }, 'Resume'));
  }
  if (tenant.status === 'failed') {
    buttons.push(h('button', { type: 'button', onclick: () => post('Retry', '/retry') }, 'Retry provisioning'));
  }
  if (['deleted', 'deprovisioning'].includes(tenant.status)) {
    buttons.push(h('button', { type: 'button', onclick: () => post('Restore', '/restore') }, 'Restore'));
  }
  if (['active', 'suspended'].includes(tenant.status)) {
    buttons.push(h('button', { type: 'button', class: 'secondary', onclick: () => post('Rotate credentials', '/rotate-credentials') }, 'Rotate credentials'));
    const plan = h('input', { id: 'set-plan', name: 'plan', size: 10, value: tenant.plan });
    buttons.push(h('form', {
      class: 'actions',
      onsubmit: (event) => {
        event.preventDefault();
        act('Set plan', () => api('PUT', `${path}/plan`, { plan: plan.value.trim() }));
      },
    }, h('span', { class: 'field' }, h('label', { for: 'set-plan' }, 'Plan'), plan), h('button', { type: 'submit', class: 'secondary' }, 'Set plan')));
    const target = h('select', { id: 'move-to' }, clusters.filter((c) => !c.draining).map((c) => h('option', { value: c.name, selected: c.name === tenant.cluster }, c.name)));
    const isolation = h('select', { id: 'move-isolation' }, ['schema', 'database'].map((i) => h('option', { value: i, selected: i === tenant.isolation }, i)));
    buttons.push(h('form', {
      class: 'actions',
      onsubmit: (event) => {
        event.preventDefault();
        act('Move', () => api('POST', `${path}/moves`, { to_cluster: target.value, isolation: isolation.value }));
      },
    }, h('span', { class: 'field' }, h('label', { for: 'move-to' }, 'Move to cluster'), target),
    h('span', { class: 'field' }, h('label', { for: 'move-isolation' }, 'Isolation'), isolation),
    h('button', { type: 'submit', class: 'secondary' }, 'Move')));
    buttons.push(h('button', {
      type: 'button',
      class: 'danger',
      onclick: async () => {
        const ok = await confirmByTyping('Delete tenant',
          `${tenant.slug} stops answering at once; its data is kept for the retention period (restore brings it back), then dropped.`,
          tenant.slug);
        if (ok) await act('Delete', () => api('DELETE', path));
      },
    }, 'Delete…'));
  }
  return h('section', { class: 'actions', 'aria-label': 'Actions' }, buttons);
}

// ---- fleet migrations --------------------------------------------------------------------

function remaining(counts) {
  return (counts.pending || 0) + (counts.running || 0);
}

function failedCount(counts) {
  return (counts.failed || 0) + (counts.drift || 0) + (counts.lock_timeout || 0);
}

async function migrationsPage(main) {
  const runs = await api('GET', '/v1/migrations/runs');
  put(main,
    h('h1', {}, 'Fleet migrations'),
    can('operator') ? startRunForm() : null,
    h('h2', {}, 'Runs'),
    table([['Run'], ['State'], ['Started'], ['By'], ['Target'], ['Tenants', 'num'], ['Done', 'num'], ['Not migrated', 'num'], ['Remaining', 'num']],
      runs.map((r) => [
        h('a', { href: `#/migrations/${r.id}` }, h('code', {}, r.id.slice(0, 8))),
        badge(r.state), when(r.created_at), r.created_by, `V${r.target_version}`, r.tenants,
        r.counts.done || 0, failedCount(r.counts), remaining(r.counts),
      ]),
      'No runs yet.'));
  if (runs.some((r) => r.state === 'running')) every(2000, () => refresh(migrationsPage));
}

function startRunForm() {
  const num = (name, label, value, min, max) => h('label', {}, label, h('input', { name, type: 'number', min, max, value, size: 5 }));
  return h('form', {
    class: 'inline',
    'aria-label': 'Start a fleet migration run',
    onsubmit: async (event) => {
      event.preventDefault();
      const body = {};
      for (const [key, value] of new FormData(event.target)) {
        if (value === '') continue;
        body[key] = ['plan', 'cluster'].includes(key) ? value : Number(value);
      }
      try {
        const run = await api('POST', '/v1/migrations/runs', body);
        flash(`Run ${run.id.slice(0, 8)} started.`);
        location.hash = `#/migrations/${run.id}`;
      } catch (error) {
        flash(`Start failed: ${error.message}`, true);
      }
    },
  },
  h('label', {}, 'Plan (optional)', h('input', { name: 'plan', size: 10 })),
  h('label', {}, 'Cluster (optional)', h('input', { name: 'cluster', size: 10 })),
  num('concurrency', 'Concurrency', 4, 1, 256),
  num('canary', 'Canary tenants', 0, 0, 100000),
  num('max_failures', 'Halt after failures', '', 0, 100000),
  h('button', { type: 'submit' }, 'Start migration run'));
}

// Finished-tenant samples of the run shown, for its rate.
let samples = { run: null, points: [] };

function rateOf(runId, finished) {
  if (samples.run !== runId) samples = { run: runId, points: [] };
  const now = Date.now();
  samples.points.push([now, finished]);
  samples.points = samples.points.filter(([t]) => now - t <= 15000);
  const [t0, f0] = samples.points[0];
  return now - t0 >= 1000 ? ((finished - f0) * 1000) / (now - t0) : null;
}

function duration(seconds) {
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

async function runPage(main, id) {
  const run = await api('GET', `/v1/migrations/runs/${encodeURIComponent(id)}?state=failed`);
  const counts = run.counts;
  const done = counts.done || 0;
  const failed = failedCount(counts);
  const left = remaining(counts);
  const total = Math.max(1, done + failed + left);
  const rate = run.state === 'running' ? rateOf(run.id, done + failed) : null;
  const bar = h('div', {
    class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': total,
    'aria-valuenow': done + failed, 'aria-label': 'Tenants finished',
  }, h('div', { class: 'done' }), h('div', { class: 'failed' }));
  bar.children[0].style.width = `${(100 * done) / total}%`;
  bar.children[1].style.width = `${(100 * failed) / total}%`;
  const stat = (value, label, testid) => h('div', { class: 'stat', 'data-stat': testid }, h('b', {}, String(value)), h('span', {}, label));
  const buttons = [];
  if (can('operator') && run.state === 'running') {
    buttons.push(h('button', {
      type: 'button', class: 'danger',
      onclick: () => act('Halt', () => api('POST', `/v1/migrations/runs/${run.id}/halt`)),
    }, run.halt_requested_by ? 'Halt requested' : 'Halt run'));
    if (run.halt_requested_by) buttons[0].disabled = true;
  }
  if (can('operator') && ['halted', 'failed', 'interrupted'].includes(run.state)) {
    buttons.push(h('button', {
      type: 'button',
      onclick: () => act('Resume', () => api('POST', `/v1/migrations/runs/${run.id}/resume`)),
    }, 'Resume run'));
  }
  put(main,
    h('p', {}, h('a', { href: '#/migrations' }, '← Fleet migrations')),
    h('h1', {}, 'Run ', h('code', {}, run.id.slice(0, 8)), ' ', badge(run.state)),
    h('p', { class: 'muted' }, `Started by ${run.created_by} `, when(run.created_at), `, to V${run.target_version}`,
      run.finished_at ? [', finished ', when(run.finished_at)] : null, '.'),
    run.halt_reason ? h('p', { class: 'error' }, run.halt_reason) : null,
    run.halt_requested_by && run.state === 'running' ? h('p', { class: 'muted' }, `Halt requested by ${run.halt_requested_by}: no tenant will be started.`) : null,
    bar,
    h('div', { class: 'stats', 'aria-live': 'polite' },
      stat(done, 'done', 'done'),
      stat(failed, 'not migrated', 'failed'),
      stat(left, 'remaining', 'remaining'),
      stat(rate === null ? '—' : `${rate.toFixed(1)}/s`, 'rate', 'rate'),
      stat(rate && left ? duration(left / rate) : '—', 'time left', 'eta')),
    h('div', { class: 'actions' }, buttons),
    h('h2', {}, 'Failures'),
    table([['Tenant'], ['Attempts', 'num'], ['From', 'num'], ['Error']],
      run.items.map((i) => [h('a', { href: `#/tenants/${i.slug}` }, i.slug), i.attempts, i.from_version === null ? '—' : `V${i.from_version}`, h('code', {}, i.error || '')]),
      'No failures.'));
  if (run.state === 'running') every(1000, () => refresh((m) => runPage(m, id)));
}

// ---- tokens ------------------------------------------------------------------------------

async function tokensPage(main) {
  const tokens = await api('GET', '/v1/tokens');
  const shown = h('div', { 'aria-live': 'polite' });
  const form = h('form', {
    class: 'inline',
    'aria-label': 'Create a token',
    onsubmit: async (event) => {
      event.preventDefault();
      const data = Object.fromEntries([...new FormData(event.target)].filter(([, v]) => v));
      try {
        const created = await api('POST', '/v1/tokens', data);
        put(shown, h('p', {}, `Token ${created.id} (${created.name}, ${created.scope}); copy it now, it is not shown again:`),
          h('p', { class: 'token-once' }, h('code', {}, created.token)));
      } catch (error) {
        flash(`Create failed: ${error.message}`, true);
      }
    },
  },
  h('label', {}, 'Name', h('input', { name: 'name', required: true })),
  h('label', {}, 'Scope', h('select', { name: 'scope' }, SCOPES.map((s) => h('option', { value: s, selected: s === 'read_only' }, s)))),
  h('label', {}, 'Expires in (e.g. 90d)', h('input', { name: 'expires_in', size: 8 })),
  h('button', { type: 'submit' }, 'Create token'));
  const state = (t) => (t.revoked_at ? 'revoked' : t.expires_at && new Date(t.expires_at) <= new Date() ? 'expired' : 'active');
  put(main,
    h('h1', {}, 'Operator tokens'),
    form, shown,
    table([['Id', 'num'], ['Name'], ['Scope'], ['State'], ['Created'], ['Expires'], ['Last used'], ['']],
      tokens.map((t) => [t.id, t.name, t.scope, badge(state(t)), when(t.created_at), when(t.expires_at), when(t.last_used_at),
        h('button', {
          type: 'button', class: 'secondary', 'aria-label': `Revoke token ${t.id} (${t.name})`,
          onclick: async () => {
            const ok = await confirmByTyping('Revoke token', `${t.name}'s next request is refused.`, String(t.id));
            if (ok) await act('Revoke', () => api('DELETE', `/v1/tokens/${t.id}`));
          },
        }, 'Revoke')]),
      'No tokens found.'));
}

// ---- routing -----------------------------------------------------------------------------

// Re-renders a page in place (polling): keeps focus and scroll; a failure is shown, not thrown.
async function refresh(render) {
  if (document.querySelector('dialog[open]')) return;
  const main = document.getElementById('main');
  const scroll = window.scrollY;
  const focused = document.activeElement && document.activeElement.id;
  const scratch = document.createElement('div');
  const stopped = timers;
  timers = [];
  try {
    await render(scratch);
    stopped.forEach(clearInterval);
    main.replaceChildren(...scratch.childNodes);
    window.scrollTo(0, scroll);
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  } catch (error) {
    timers.forEach(clearInterval);
    timers = stopped;
    flash(`Could not refresh: ${error.message}`, true);
  }
}

async function route() {
  timers.forEach(clearInterval);
  timers = [];
  const main = document.getElementById('main');
  const [, page, arg] = location.hash.split('?')[0].split('/');
  if (!session.token) {
    frame();
    signInPage(main);
    return;
  }
  if (!session.me) {
    try {
      session.me = await api('GET', '/v1/whoami');
    } catch (error) {
      signOut(`Sign in again: ${error.message}`);
      return;
    }
  }
  frame();
  const pages = {
    overview: overviewPage,
    tenants: arg ? (m) => tenantPage(m, decodeURIComponent(arg)) : tenantsPage,
    migrations: arg ? (m) => runPage(m, decodeURIComponent(arg)) : migrationsPage,
    tokens: tokensPage,
  };
  const render = Object.hasOwn(pages, page) ? pages[page] : null;
  if (!render) {
    location.hash = '#/overview';
    return;
  }
  const scratch = document.createElement('div');
  try {
    await render(scratch);
    main.replaceChildren(...scratch.childNodes);
  } catch (error) {
    put(main, h('h1', {}, 'Something went wrong'), h('p', { class: 'error', role: 'alert' }, error.message));
  }
}

window.addEventListener('hashchange', () => {
  flashAge += 1;
  if (flashAge > 1) clearFlash();
  route();
});

route();
