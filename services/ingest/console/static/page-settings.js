// Settings: log streams, webhook endpoints, schemas, API keys, members, the IP
// allowlist and viewer links. One list-and-form frame serves them all; a
// secret answered by a create is shown once and kept nowhere.
import { fmtTime, query } from './api.js';
import { announce, append, button, card, code, copyButton, errorBox, group, h, makeForm, maxLen, notice, PATTERN, put, secretPanel, small, table, when } from './ui.js';

// cfg: {title, noun, path, intro, columns [[heading, row -> cell]], fields,
// canEdit, label(row), idOf(row), toBody(body, editing), secret: {field, title},
// deleteLabel, canDelete(row), rowActions(row, act, path), before, onReset, onEdit}
async function crud(ctx, cfg) {
  const list = h('div');
  const secretBox = h('div');
  const messages = h('div', { 'aria-live': 'polite' });
  const formCard = card('');
  const heading = formCard.firstChild;
  const cancel = button('Cancel', () => reset(), { hidden: true });
  const idOf = cfg.idOf || ((r) => r.id);
  const name = cfg.label || idOf;
  const path = (r) => `${cfg.path}/${encodeURIComponent(idOf(r))}`;
  const Noun = cfg.noun[0].toUpperCase() + cfg.noun.slice(1);
  const del = cfg.deleteLabel || 'Delete';
  let editing = null;

  const form = makeForm({
    groups: [group(cfg.fields)],
    submitLabel: '',
    buttons: [cancel],
    async onSubmit(raw) {
      const body = cfg.toBody ? cfg.toBody(raw, editing) : raw;
      if (editing) {
        await ctx.api(path(editing), { method: 'PATCH', body });
      } else {
        const created = await ctx.api(cfg.path, { method: 'POST', body });
        const secret = cfg.secret && created[cfg.secret.field];
        if (secret) put(secretBox, secretPanel(cfg.secret.title, secret)).firstChild.focus();
      }
      announce(`${Noun} ${editing ? 'saved' : 'added'}.`);
      reset();
      await reload();
    },
  });

  function mode(row) {
    editing = row;
    heading.textContent = row ? `Edit ${cfg.noun} ${name(row)}` : `Add ${cfg.noun}`;
    form.submit.textContent = row ? 'Save changes' : `Add ${cfg.noun}`;
    cancel.hidden = !row;
    form.clear();
    form.fill(row || {});
    for (const f of cfg.fields) if (f.fixed) form.field(f.name).control.disabled = Boolean(row);
  }
  function reset() {
    mode(null);
    if (cfg.onReset) cfg.onReset(form);
  }
  function edit(row) {
    mode(row);
    if (cfg.onEdit) cfg.onEdit(form, row);
    form.node.scrollIntoView();
    form.field(cfg.fields.find((f) => !f.fixed).name).control.focus();
  }

  async function act(done, fn) {
    try {
      const out = await fn();
      put(messages, notice(typeof done === 'function' ? done(out) : done));
      await reload();
    } catch (err) {
      if (err.name !== 'AbortError') put(messages, errorBox(err));
    }
  }

  async function reload() {
    const { data } = await ctx.api(cfg.path);
    put(list, data.length ? table([...cfg.columns.map(([c]) => c), 'Actions'], data.map((r) => [
      ...cfg.columns.map(([, fn]) => fn(r)),
      h('span', { class: 'row-actions' },
        cfg.rowActions ? cfg.rowActions(r, act, path(r)) : null,
        cfg.canEdit ? small('Edit', () => edit(r), `Edit ${name(r)}`) : null,
        !cfg.canDelete || cfg.canDelete(r) ? small(del, () => {
          if (window.confirm(`${del} ${name(r)}?`)) act(`${name(r)}: ${del.toLowerCase()}d.`, () => ctx.api(path(r), { method: 'DELETE' }));
        }, `${del} ${name(r)}`, 'small danger') : null),
    ]), { caption: cfg.title, rowHeader: true }) : notice(`No ${cfg.noun} yet.`));
  }

  await reload();
  reset();
  append(ctx.root,
    cfg.intro ? h('p', { class: 'muted' }, cfg.intro) : null,
    cfg.before,
    secretBox,
    messages,
    h('section', { class: 'card', 'aria-label': cfg.title }, list),
    append(formCard, form.node));
}

const toggle = (ctx, r, act, path, label) => small(r.enabled ? 'Disable' : 'Enable',
  () => act(`${label} ${r.enabled ? 'disabled' : 'enabled'}.`, () => ctx.api(path, { method: 'PATCH', body: { enabled: !r.enabled } })),
  `${r.enabled ? 'Disable' : 'Enable'} ${label}`);

// ---- log streams ------------------------------------------------------------------

// Each type's settings (docs/log-streams.md) and an example to start from.
const STREAMS = {
  splunk_hec: ['url, token*, index, source, sourcetype, verify_tls', { url: 'https://splunk.example.com:8088', token: '' }],
  datadog: ['api_key*, site, url, service, tags', { api_key: '', site: 'datadoghq.com' }],
  elasticsearch: ['url, index, username + password* or api_key*, verify_tls', { url: 'https://es.example.com:9200', index: 'chainlog-audit', api_key: '' }],
  http: ['url, secret* (generated when absent), headers, gzip', { url: 'https://receiver.example.com/chainlog' }],
  s3: ['bucket, prefix, region, access_key_id, secret_access_key*, endpoint_url', { bucket: '', region: 'us-east-1', access_key_id: '', secret_access_key: '' }],
  syslog: ['host, port, transport (tls, tcp, udp), body (json, cef, leef), ca_pem, cert_pem, key_pem*', { host: 'siem.example.com', port: 6514, transport: 'tls', body: 'json' }],
  sentinel: ['tenant_id, client_id, client_secret*, endpoint, dcr_immutable_id, stream_name', { tenant_id: '', client_id: '', client_secret: '', endpoint: '', dcr_immutable_id: '', stream_name: '' }],
  chronicle: ['service_account*, project_id, location, instance_id', { service_account: {}, project_id: '', location: 'us', instance_id: '' }],
  otlp: ['endpoint, encoding (json, protobuf), headers*, gzip, service_name', { endpoint: 'https://otel.example.com:4318', encoding: 'json' }],
  security_lake: ['bucket, region, access_key_id, secret_access_key*, source_name, account_id', { bucket: '', region: 'us-east-1', access_key_id: '', secret_access_key: '', source_name: 'chainlog', account_id: '' }],
};
const example = (type) => JSON.stringify(STREAMS[type][1], null, 2);
function configHelp(form, type, editing) {
  form.field('config').node.querySelector('.help').textContent = `${type}: ${STREAMS[type][0]} (* secret${editing ? ': never shown; leave it out to keep it' : ''}). See docs/log-streams.md.`;
}

export const streams = (ctx) => crud(ctx, {
  title: 'Log streams',
  noun: 'log stream',
  path: '/api/v1/log-streams',
  intro: 'Every event goes to each enabled stream, in order, starting from the newest event when the stream is created.',
  label: (r) => r.name,
  canEdit: true,
  columns: [
    ['Name', (r) => r.name],
    ['Type', (r) => code(r.type)],
    ['Status', (r) => h('span', {}, r.status, r.last_error ? h('span', { class: 'muted' }, ` (${r.last_error})`) : null)],
    ['Delivered', (r) => `${r.cursor.delivered} (to seq ${r.cursor.last_seq})`],
    ['Filter', (r) => Object.entries(r.filter || {}).map(([k, v]) => `${k}: ${v}`).join('; ') || 'every event'],
  ],
  fields: [
    { name: 'name', label: 'Name', required: true, check: maxLen(200, 'name') },
    { name: 'type', label: 'Type', type: 'select', fixed: true, options: Object.keys(STREAMS).map((t) => [t, t]) },
    { name: 'config', label: 'Configuration (JSON)', type: 'json', required: true, rows: 8, help: '-' },
    { name: 'filter.actions', label: 'Only these actions (optional)', type: 'list', check: PATTERN, max: 50, help: 'Comma separated patterns, e.g. document.*, admin.*' },
    { name: 'filter.tenant_ids', label: 'Only these tenants (optional)', type: 'list', max: 100 },
    { name: 'filter.checkpoints', label: 'Also send each new signed checkpoint', type: 'checkbox' },
    { name: 'enabled', label: 'Enabled', type: 'checkbox', def: true },
  ],
  onReset(form) {
    const select = form.field('type').control;
    const config = form.field('config').control;
    const show = () => {
      if (!config.value.trim() || Object.keys(STREAMS).some((t) => config.value === example(t))) config.value = example(select.value);
      configHelp(form, select.value, false);
    };
    config.value = '';
    select.onchange = show;
    show();
  },
  onEdit: (form, r) => configHelp(form, r.type, true),
  rowActions: (r, act, path) => [
    small('Send test', () => act((t) => `Test to ${r.name}: ${t.outcome}${t.status ? ` (HTTP ${t.status})` : ''}${t.error ? `: ${t.error}` : ''}`,
      () => ctx.api(`${path}/test`, { method: 'POST' })), `Send test to ${r.name}`),
    toggle(ctx, r, act, path, r.name),
  ],
  secret: { field: 'secret', title: 'The stream\'s signing secret' },
});

export const webhooks = (ctx) => crud(ctx, {
  title: 'Webhook endpoints',
  noun: 'webhook endpoint',
  path: '/api/v1/webhook-endpoints',
  intro: 'Alerts are posted to every endpoint (or those a rule names), signed the Standard Webhooks way with the endpoint\'s secret.',
  label: (r) => r.url,
  columns: [
    ['URL', (r) => code(r.url)],
    ['Description', (r) => r.description],
    ['Checkpoints', (r) => (r.checkpoints ? 'yes' : 'no')],
    ['Created', (r) => when(r.created_at)],
  ],
  fields: [
    { name: 'url', label: 'URL', required: true, placeholder: 'https://hooks.example.com/chainlog' },
    { name: 'description', label: 'Description', check: maxLen(500, 'description') },
    { name: 'checkpoints', label: 'Also receive each new signed checkpoint', type: 'checkbox' },
  ],
  secret: { field: 'secret', title: 'The endpoint\'s signing secret' },
});

export async function schemas(ctx) {
  const mode = makeForm({
    groups: [group([{ name: 'schema_mode', label: 'An event that breaks a schema is', type: 'select', options: [['permissive', 'stored, and flagged (permissive)'], ['strict', 'refused with a 422 (strict)']] }])],
    submitLabel: 'Save mode',
    cls: 'form inline',
    async onSubmit(body) {
      await ctx.api('/api/v1/workspace', { method: 'PATCH', body });
      announce(`Schema mode: ${body.schema_mode}.`);
    },
  });
  mode.fill(await ctx.api('/api/v1/workspace'));
  return crud(ctx, {
    title: 'Event schemas',
    noun: 'schema',
    path: '/api/v1/schemas',
    intro: 'With schemas, an event\'s action must match a pattern, and its metadata the pattern\'s JSON Schema.',
    before: card('Schema mode', mode.node),
    label: (r) => r.action_pattern,
    canEdit: true,
    columns: [
      ['Action pattern', (r) => code(r.action_pattern)],
      ['Description', (r) => r.description],
      ['Metadata schema', (r) => (r.metadata_schema ? h('details', {}, h('summary', {}, 'JSON Schema'), h('pre', {}, JSON.stringify(r.metadata_schema, null, 2))) : 'none')],
      ['Updated', (r) => when(r.updated_at)],
    ],
    fields: [
      { name: 'action_pattern', label: 'Action pattern', required: true, check: PATTERN },
      { name: 'description', label: 'Description', type: 'textarea', check: maxLen(1000, 'description') },
      { name: 'metadata_schema', label: 'Metadata JSON Schema (optional)', type: 'json', emptyAs: null, placeholder: '{"type": "object", "required": ["amount"]}' },
    ],
    toBody: (b) => ({ description: '', ...b }),
  });
}

export const keys = (ctx) => crud(ctx, {
  title: 'API keys',
  noun: 'API key',
  path: '/api/v1/api-keys',
  label: (r) => r.name,
  columns: [
    ['Name', (r) => r.name],
    ['Prefix', (r) => code(r.prefix)],
    ['Scopes', (r) => r.scopes.join(', ')],
    ['Created', (r) => when(r.created_at)],
    ['Last used', (r) => when(r.last_used_at)],
    ['Status', (r) => (r.revoked_at ? h('span', {}, 'revoked ', when(r.revoked_at)) : 'active')],
  ],
  fields: [
    { name: 'name', label: 'Name', required: true, check: maxLen(200, 'name') },
    { name: 'scopes', label: 'Scopes', type: 'multi', required: true, def: ['ingest'], options: [['ingest', 'ingest: send events'], ['read', 'read: query, verify, export'], ['admin', 'admin: manage the workspace'], ['auditor', 'auditor: read, verify, export; nothing else (alone)']] },
  ],
  deleteLabel: 'Revoke',
  canDelete: (r) => !r.revoked_at,
  secret: { field: 'key', title: 'The new API key' },
});

export const members = (ctx) => crud(ctx, {
  title: 'Members',
  noun: 'member',
  path: '/api/v1/members',
  intro: 'Owners and admins receive alert emails when a rule names no recipients. A workspace keeps at least one owner.',
  idOf: (r) => r.email,
  canEdit: true,
  columns: [['Email', (r) => r.email], ['Role', (r) => r.role], ['Added', (r) => when(r.created_at)]],
  fields: [
    { name: 'email', label: 'Email', type: 'email', required: true, fixed: true, check: (v) => (/^[^@\s<>,;"]+@[^@\s<>,;"]+$/.test(v) && v.length <= 254 ? null : 'email must be an email address') },
    { name: 'role', label: 'Role', type: 'select', options: [['viewer', 'viewer'], ['auditor', 'auditor'], ['admin', 'admin'], ['owner', 'owner']] },
  ],
  toBody: (b, editing) => (editing ? { role: b.role } : b),
  deleteLabel: 'Remove',
});

export const allowlist = (ctx) => crud(ctx, {
  title: 'IP allowlist',
  noun: 'allowlist entry',
  path: '/api/v1/ip-allowlist',
  intro: 'With entries, API requests from other addresses are refused (403). The API refuses a change that would refuse your own address.',
  label: (r) => r.cidr,
  columns: [['Network', (r) => code(r.cidr)], ['Description', (r) => r.description], ['Added', (r) => when(r.created_at)]],
  fields: [
    { name: 'cidr', label: 'Address or network (CIDR)', required: true, placeholder: '203.0.113.0/24' },
    { name: 'description', label: 'Description', check: maxLen(500, 'description') },
  ],
  deleteLabel: 'Remove',
});

// ---- viewer links -----------------------------------------------------------------

export async function viewer(ctx) {
  const out = h('div');
  const tenant = ctx.params.get('tenant_id');
  const form = makeForm({
    groups: [group([
      { name: 'tenant_id', label: 'Tenant ID', required: true, check: maxLen(256, 'tenant_id') },
      { name: 'actor_id', label: 'Actor ID (optional)', check: maxLen(256, 'actor_id'), help: 'Only this actor\'s events' },
      { name: 'ttl', label: 'Valid for (seconds)', type: 'int', min: 60, max: 86400, def: 3600, help: 'From 60 to 86,400 (24 hours). A link cannot be revoked: keep it short.' },
    ])],
    submitLabel: 'Create viewer link',
    async onSubmit(body) {
      const t = await ctx.api('/api/v1/viewer-tokens', { method: 'POST', body });
      const url = new URL(t.url, location.origin).href;
      const snippet = `<iframe src="${url.replace(/&/g, '&amp;').replace(/"/g, '&quot;')}" title="Audit log" width="800" height="600"></iframe>`;
      put(out, secretPanel(`Viewer link for tenant ${t.tenant_id}${t.actor_id ? `, actor ${t.actor_id}` : ''}`, url, {
        warning: `Anyone with this link can read these events until ${fmtTime(t.expires_at)}. It is shown only this once.`,
        extra: [
          h('p', {}, h('a', { href: url, target: '_blank', rel: 'noopener' }, 'Open the viewer')),
          h('p', {}, 'Embed it in a page:'),
          h('div', { class: 'secret-value' }, code(snippet, 'hash'), copyButton(() => snippet, 'Copy the embed code'))],
      })).firstChild.focus();
      announce('Viewer link created.');
    },
  });
  form.fill({ tenant_id: tenant });
  append(ctx.root,
    h('p', { class: 'muted' }, 'A viewer link shows one tenant\'s events (or one actor\'s), read-only, to embed in your product. ',
      tenant ? h('a', { href: `#/events${query({ tenant_id: tenant })}` }, 'This tenant\'s events') : null),
    out,
    card('New viewer link', form.node));
}
