// Alerts: rules (list, create, edit, enable or disable, delete) and what fired,
// with every delivery attempt. The conditions follow the rule type and are
// checked as services/alerter/rules/ checks them.
import { announce, button, card, code, errorBox, group, h, makeForm, notice, pager, PATTERN, put, small, table, when } from './ui.js';

const c = (name) => `conditions.${name}`;
const HHMM = (v) => (/^([01]\d|2[0-3]):[0-5]\d$/.test(v) ? null : 'must be a time "HH:MM" between 00:00 and 23:59');
const EMAIL = (v) => (v.length <= 254 && /^[^@\s<>,;"]+@([^@\s<>,;"]+\.[^@\s<>,;"]+|localhost)$/.test(v) ? null : 'must be an email address');
const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const windowSeconds = (min = 1, max = 604800) => ({ name: c('window_seconds'), label: 'Window (seconds)', type: 'int', min, max, def: 300 });
const threshold = (min, help) => ({ name: c('threshold'), label: 'Threshold', type: 'int', min, max: 1000000, required: true, help });
const onePattern = { name: c('action_pattern'), label: 'Action pattern (optional)', check: PATTERN, help: 'Only actions matching it, e.g. admin.*; empty: every action' };

export const RULE_TYPES = {
  high_volume_destructive: ['High volume of destructive actions', 'Fires when one actor performs more matching actions than the threshold within the window.', [
    threshold(1, 'Fires above this many actions'),
    windowSeconds(),
    { name: c('action_patterns'), label: 'Action patterns', type: 'list', check: PATTERN, max: 50, def: ['*.delete', '*.destroy', '*.remove', '*.purge', '*.revoke'], help: 'Comma separated; * matches any run of characters' },
  ]],
  repeated_action: ['Repeated action', 'Fires when one actor performs the same action at least the threshold of times within the window.', [
    threshold(2), windowSeconds(), onePattern,
  ]],
  new_country: ['New country', 'Fires when an actor acts from a country not seen for them within the lookback.', [
    { name: c('lookback_days'), label: 'Lookback (days)', type: 'int', min: 1, max: 3650, def: 90 },
    { name: c('alert_on_first_seen'), label: 'Also alert on a new actor\'s first country', type: 'checkbox' },
  ]],
  ingestion_spike: ['Ingestion spike', 'Fires when a window holds at least the minimum of events and more than multiplier × the mean of the windows before.', [
    windowSeconds(10, 86400),
    { name: c('multiplier'), label: 'Multiplier', type: 'number', gt: 1, max: 1000, def: 5 },
    { name: c('baseline_windows'), label: 'Baseline windows', type: 'int', min: 1, max: 1000, def: 12 },
    { name: c('min_events'), label: 'Minimum events', type: 'int', min: 1, max: 1000000000, def: 100 },
  ]],
  off_hours: ['Off hours', 'Fires for an event whose occurred_at, in the time zone, is outside the working hours of the working days.', [
    { name: c('start'), label: 'Working hours start', type: 'time', required: true, check: HHMM },
    { name: c('end'), label: 'Working hours end', type: 'time', required: true, check: HHMM, help: 'Before the start: the hours cross midnight' },
    { name: c('days'), label: 'Working days', type: 'multi', required: true, options: DAYS.map((d) => [d, d]), def: DAYS.slice(0, 5) },
    { name: c('timezone'), label: 'Time zone', def: 'UTC', datalist: 'time-zones', help: 'An IANA name, e.g. Europe/Berlin' },
    onePattern,
  ]],
  chain_integrity: ['Chain integrity', 'Raised by the scheduled verification when it finds a break. Every workspace has one; it has no conditions.', []],
};

const zones = () => h('datalist', { id: 'time-zones' },
  ['UTC', ...(Intl.supportedValuesOf ? Intl.supportedValuesOf('timeZone') : [])].map((z) => h('option', { value: z })));

function ruleForm(ctx, endpoints, reload) {
  let editing = null;
  const about = h('p', { class: 'muted' });
  const conditions = group([]);
  const cancel = button('Cancel', () => mode(null), { hidden: true });
  const form = makeForm({
    groups: [
      group([
        { name: 'name', label: 'Name', required: true, check: (v) => (v.length <= 200 ? null : 'name must be at most 200 characters') },
        { name: 'rule_type', label: 'Rule type', type: 'select', options: Object.entries(RULE_TYPES).map(([k, [label]]) => [k, `${label} (${k})`]) },
      ]),
      conditions,
      group([
        { name: 'channels', label: 'Channels', type: 'multi', required: true, options: [['webhook', 'webhook'], ['email', 'email']], def: ['webhook'] },
        { name: 'email_recipients', label: 'Email recipients', type: 'list', check: EMAIL, max: 50, emptyAs: [], help: 'Comma separated; empty: the workspace\'s owners and admins' },
        { name: 'webhook_endpoint_ids', label: 'Webhook endpoints', type: 'multi', emptyAs: null, options: endpoints.map((e) => [e.id, e.description ? `${e.description} (${e.url})` : e.url]), none: 'No webhook endpoint yet (Settings, Webhook endpoints).', help: 'None checked: every endpoint' },
        { name: 'cooldown_seconds', label: 'Cooldown (seconds)', type: 'int', min: 0, max: 604800, def: 300, help: 'Quiet time after an alert, per rule and actor' },
        { name: 'enabled', label: 'Enabled', type: 'checkbox', def: true },
      ]),
    ],
    submitLabel: '',
    buttons: [cancel],
    validate: ({ conditions: cd }) => (cd && cd.start && cd.start === cd.end ? [{ field: c('end'), message: 'must differ from start' }] : []),
    async onSubmit(body) {
      body.conditions = body.conditions || {};
      await ctx.api(editing ? `/api/v1/alert-rules/${encodeURIComponent(editing.id)}` : '/api/v1/alert-rules', { method: editing ? 'PATCH' : 'POST', body });
      announce(`Rule ${body.name} ${editing ? 'saved' : 'created'}.`);
      mode(null);
      await reload();
    },
  });
  const type = form.field('rule_type').control;
  function setType(values) {
    const [, text, fields] = RULE_TYPES[type.value];
    conditions.replace(fields);
    for (const f of conditions.fields) f.fill(values ? values[f.name.slice(11)] : undefined);
    about.textContent = text;
  }
  type.addEventListener('change', () => setType());
  function mode(rule) {
    editing = rule;
    heading.textContent = rule ? `Edit rule ${rule.name}` : 'New rule';
    form.submit.textContent = rule ? 'Save changes' : 'Create rule';
    cancel.hidden = !rule;
    form.clear();
    form.fill(rule || {});
    setType(rule && rule.conditions);
  }
  const node = card('', zones(), about, form.node);
  const heading = node.firstChild;
  mode(null);
  node.edit = (rule) => {
    mode(rule);
    node.scrollIntoView();
    form.field('name').control.focus();
  };
  return node;
}

const summary = (cd) => Object.entries(cd || {}).filter(([, v]) => v !== null).map(([k, v]) => `${k}: ${v}`).join('; ') || '—';

function rulesTable(ctx, rules, form, reload, messages) {
  if (!rules.length) return notice('No alert rules yet.');
  const act = async (done, fn) => {
    try {
      await fn();
      announce(done);
      await reload();
    } catch (err) {
      if (err.name !== 'AbortError') put(messages, errorBox(err));
    }
  };
  return table(['Name', 'Type', 'Conditions', 'Channels', 'Status', 'Actions'], rules.map((r) => {
    const path = `/api/v1/alert-rules/${encodeURIComponent(r.id)}`;
    const onOff = r.enabled ? 'Disable' : 'Enable';
    return [r.name, code(r.rule_type), summary(r.conditions), r.channels.join(', '), r.enabled ? 'enabled' : 'disabled',
      h('span', { class: 'row-actions' },
        small('Edit', () => form.edit(r), `Edit ${r.name}`),
        small(onOff, () => act(`${r.name}: ${onOff.toLowerCase()}d.`, () => ctx.api(path, { method: 'PATCH', body: { enabled: !r.enabled } })), `${onOff} ${r.name}`),
        small('Delete', () => {
          if (window.confirm(`Delete the rule ${r.name}?`)) act(`${r.name}: deleted.`, () => ctx.api(path, { method: 'DELETE' }));
        }, `Delete ${r.name}`, 'small danger'))];
  }), { caption: 'Alert rules', rowHeader: true });
}

const deliveries = (list) => (list.length ? h('ul', { class: 'plain' }, list.map((d) => h('li', {},
  h('strong', {}, `${d.channel}: ${d.status}`), d.last_error ? h('span', { class: 'muted' }, ` (${d.last_error})`) : null,
  d.attempts.length ? h('details', {}, h('summary', {}, `${d.attempts.length} attempt(s)`),
    table(['#', 'At', 'Outcome', 'Status', 'Duration', 'Error'], d.attempts.map((a) => [
      String(a.attempt), when(a.at), a.outcome, a.status ?? '', a.duration_ms == null ? '' : `${a.duration_ms} ms`, a.error]), { cls: 'compact' })) : null))) : '—');

async function alertsList(ctx, box, cursor = '', stack = []) {
  const page = await ctx.api('/api/v1/alerts', { params: { limit: 25, cursor } });
  const again = (next, rest) => alertsList(ctx, box, next, rest).catch((err) => { if (err.name !== 'AbortError') put(box, errorBox(err)); });
  const older = page.pagination.next_cursor;
  put(box,
    page.data.length ? table(['Triggered', 'Rule', 'Reason', 'Event', 'Deliveries'], page.data.map((a) => [
      when(a.triggered_at), [a.rule_name, h('br'), code(a.rule_type)], a.reason,
      a.event_id ? h('a', { href: `#/event/${encodeURIComponent(a.event_id)}` }, 'Open event') : '—',
      deliveries(a.deliveries || [])]), { caption: 'Triggered alerts, newest first' }) : notice('No alert has fired.'),
    cursor || older ? pager({
      label: 'Alert pages',
      newer: cursor ? () => again(stack[stack.length - 1] || '', stack.slice(0, -1)) : null,
      older: older ? () => again(older, [...stack, cursor]) : null,
    }) : null);
}

export async function alerts(ctx) {
  const rulesBox = h('div');
  const messages = h('div', { 'aria-live': 'polite' });
  const alertsBox = h('div');
  const formBox = h('div');
  ctx.root.append(
    card('Rules', messages, rulesBox),
    card('Triggered alerts', alertsBox),
    formBox);
  // each part shows its own refusal: a read-only key still sees what fired
  const guard = (box, p) => p.catch((err) => {
    if (err.name === 'AbortError') throw err;
    put(box, errorBox(err));
  });
  async function rules() {
    const [list, endpoints] = await Promise.all([ctx.api('/api/v1/alert-rules'), ctx.api('/api/v1/webhook-endpoints')]);
    const show = (data) => put(rulesBox, rulesTable(ctx, data, form, reload, messages));
    const reload = async () => show((await ctx.api('/api/v1/alert-rules')).data);
    const form = ruleForm(ctx, endpoints.data, reload);
    show(list.data);
    put(formBox, form);
  }
  await Promise.all([guard(rulesBox, rules()), guard(alertsBox, alertsList(ctx, alertsBox))]);
}
