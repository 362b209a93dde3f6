// DOM helpers shared by the console and the viewer. Server data only ever
// reaches the page as text nodes and attribute values, never as markup.
import { ApiError, fmtTime, localToRfc3339, rfc3339ToLocal } from './api.js';

let uid = 0;
export const newId = (p = 'x') => `${p}-${++uid}`;

// h('a', {href, class, onclick}, child, ...): children are nodes, text or arrays;
// null, undefined and false are skipped.
export function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  return append(e, ...kids);
}

export function append(node, ...kids) {
  for (const k of kids) {
    if (Array.isArray(k)) append(node, ...k);
    else if (k !== undefined && k !== null && k !== false) node.append(k instanceof Node ? k : String(k));
  }
  return node;
}

// replaceChildren without the DOM's "null" for absent children.
export const put = (node, ...kids) => { node.replaceChildren(); return append(node, ...kids); };

let quiet;
export function announce(message) {
  const region = document.getElementById('status');
  if (!region) return;
  region.textContent = '';
  clearTimeout(quiet);
  // set after a tick, so that a repeated message is read again
  setTimeout(() => { region.textContent = message; }, 50);
  quiet = setTimeout(() => { region.textContent = ''; }, 8000);
}

const TITLES = { 403: 'Not allowed', 404: 'Not found', 409: 'Refused', 410: 'Gone', 422: 'Refused', 429: 'Too many requests' };
export const errorBox = (err) => h('div', { class: 'notice error', role: 'alert' },
  h('strong', {}, `${TITLES[err.status] || 'Something went wrong'}: `), err.message || String(err));
export const notice = (text, kind = 'info') => h('p', { class: `notice ${kind}` }, text);
export const code = (text, cls) => h('code', { class: cls }, text ?? '');
export const when = (ts) => (ts ? h('time', { datetime: ts, title: ts }, fmtTime(ts)) : '—');
export const dl = (pairs, cls = 'fields') => h('dl', { class: cls }, pairs.filter(Boolean).map(([k, v]) => [
  h('dt', {}, k), h('dd', {}, v === null || v === undefined || v === '' ? '—' : v)]));

// A table; the first cell of each row is its header when rowHeader.
export function table(heads, rows, { caption, showCaption, rowHeader, cls } = {}) {
  return h('div', { class: 'table-wrap' }, h('table', { class: cls },
    caption ? h('caption', { class: showCaption ? null : 'visually-hidden' }, caption) : null,
    h('thead', {}, h('tr', {}, heads.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c, i) => (rowHeader && !i ? h('th', { scope: 'row' }, c) : h('td', {}, c))))))));
}

export const button = (label, onclick, attrs = {}) => h('button', { type: 'button', onclick, ...attrs }, label);
// a row's small button; aria names it with its row ("Edit Mass deletion")
export const small = (label, onclick, aria, cls = 'small') => button(label, onclick, { class: cls, 'aria-label': aria });
// a titled section; the heading is its first child
export function card(title, ...kids) {
  const id = newId('h');
  return h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id }, title), ...kids);
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // no Clipboard API here (permissions, insecure context): the older way
    const t = h('textarea', { class: 'visually-hidden', readonly: true });
    t.value = text;
    document.body.append(t);
    t.select();
    document.execCommand('copy');
    t.remove();
  }
  announce('Copied to the clipboard.');
}
export const copyButton = (get, label = 'Copy') => button(label, () => copyText(get()), { class: 'small' });

// A value shown once (a new key, secret or link): copy it, then dismiss it for good.
export function secretPanel(title, value, { warning, extra } = {}) {
  const id = newId('secret');
  const panel = h('section', { class: 'secret', 'aria-labelledby': id, tabindex: '-1' },
    h('h2', { id }, title),
    h('p', { class: 'warn' }, warning || 'Copy it now: it is shown only this once and cannot be shown again.'),
    h('div', { class: 'secret-value' }, code(value, 'hash'), copyButton(() => value)),
    extra,
    button('Dismiss', () => { panel.remove(); announce('Dismissed.'); }));
  return panel;
}

// Shared checks, worded as the API words them.
export const PATTERN = (v) => (v.length <= 200 && /^[A-Za-z0-9_.*-]+$/.test(v) ? null
  : "must be an action pattern of letters, digits, '.', '_', '-' and '*', e.g. document.*");
export const maxLen = (n, what) => (v) => (v.length <= n ? null : `${what} must be at most ${n} characters`);

// ---- forms --------------------------------------------------------------------
// A field: {name ('conditions.threshold'), label, type, required, min, max, gt,
// options [[value, label]], help, placeholder, check(value) -> message, def
// (the default shown), emptyAs (sent when empty; else the key is left out),
// fixed (not editable once created)}. Types: text, email, password, int,
// number, time, datetime (local input, RFC 3339 value), select, checkbox,
// multi (checkboxes), list (comma or newline separated), textarea, json.

function field(s) {
  const id = newId('f');
  const err = h('p', { class: 'field-error', id: `${id}-e`, hidden: true });
  const help = s.help ? h('p', { class: 'help', id: `${id}-h` }, s.help) : null;
  const described = help ? `${id}-h ${id}-e` : `${id}-e`;
  const t = s.type || 'text';
  let control;
  let wrap;
  let boxes = [];
  if (t === 'checkbox') {
    control = h('input', { type: 'checkbox', id, 'aria-describedby': described });
    wrap = h('div', { class: 'field check' }, control, h('label', { for: id }, s.label), help, err);
  } else if (t === 'multi') {
    boxes = s.options.map(([value, label]) => {
      const bid = newId('c');
      return [value, h('input', { type: 'checkbox', id: bid, value }), h('label', { for: bid }, label)];
    });
    control = boxes.length ? boxes[0][1] : null;
    wrap = h('fieldset', { class: 'field multi', 'aria-describedby': described }, h('legend', {}, s.label),
      boxes.length ? boxes.map(([, b, l]) => h('span', { class: 'check' }, b, l)) : h('span', { class: 'help' }, s.none),
      help, err);
  } else {
    const attrs = { id, name: s.name, 'aria-describedby': described, placeholder: s.placeholder, required: s.required, autocomplete: s.autocomplete || 'off', list: s.datalist };
    if (t === 'select') control = h('select', attrs, s.options.map(([v, l]) => h('option', { value: v }, l)));
    else if (['textarea', 'json', 'list'].includes(t)) control = h('textarea', { ...attrs, rows: s.rows || (t === 'json' ? 6 : 2), spellcheck: 'false' });
    else {
      const type = { int: 'number', number: 'number', datetime: 'datetime-local' }[t] || t;
      control = h('input', { ...attrs, type, min: s.min ?? s.gt, max: s.max, step: t === 'number' ? 'any' : null, inputmode: t === 'int' ? 'numeric' : null });
    }
    wrap = h('div', { class: 'field' }, h('label', { for: id }, s.label), control, help, err);
  }
  wrap.dataset.field = s.name;

  function fill(v) {
    v = v ?? s.def;
    if (t === 'checkbox') control.checked = Boolean(v);
    else if (t === 'multi') for (const [value, b] of boxes) b.checked = Array.isArray(v) && v.includes(value);
    else if (v === undefined || v === null) control.value = t === 'select' ? s.options[0][0] : '';
    else if (t === 'datetime') control.value = rfc3339ToLocal(v);
    else if (t === 'json') control.value = JSON.stringify(v, null, 2);
    else control.value = Array.isArray(v) ? v.join(', ') : String(v);
  }

  // [value, problem]; an undefined value leaves the key out of the body.
  function read() {
    if (t === 'checkbox') return [control.checked, null];
    if (t === 'multi') {
      const v = boxes.filter(([, b]) => b.checked).map(([value]) => value);
      if (v.length) return [v, null];
      return s.required ? [v, 'choose at least one'] : [s.emptyAs === undefined ? v : s.emptyAs, null];
    }
    let v = control.value.trim();
    if (control.validity && control.validity.badInput) return [v, `${s.label} is not complete or not a number`];
    if (v === '') return s.required ? [v, `${s.label} is required`] : [s.emptyAs, null];
    if (t === 'int' || t === 'number') {
      const n = Number(v);
      if (!Number.isFinite(n) || (t === 'int' && !Number.isInteger(n)) || n < s.min || n <= s.gt || n > s.max) {
        return [v, t === 'int' ? `must be an integer between ${s.min} and ${s.max}` : `must be a number greater than ${s.gt} and at most ${s.max}`];
      }
      return [n, null];
    }
    if (t === 'datetime') return [localToRfc3339(v), null];
    if (t === 'json') {
      try { return [JSON.parse(v), null]; } catch (e) { return [v, `must be valid JSON: ${e.message}`]; }
    }
    if (t === 'list') {
      const items = v.split(/[\n,]/).map((x) => x.trim()).filter(Boolean);
      if (s.max && items.length > s.max) return [items, `at most ${s.max} items`];
      const bad = s.check && items.find((x) => s.check(x));
      return [items, bad ? `${bad}: ${s.check(bad)}` : null];
    }
    return [v, s.check ? s.check(v) : null];
  }

  function setError(message) {
    err.textContent = message || '';
    err.hidden = !message;
    if (t === 'multi') wrap.classList.toggle('invalid', Boolean(message));
    else if (message) control.setAttribute('aria-invalid', 'true');
    else control.removeAttribute('aria-invalid');
  }

  return { name: s.name, spec: s, node: wrap, control, read, fill, setError };
}

const getPath = (obj, path) => path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj);
function setPath(obj, path, value) {
  const keys = path.split('.');
  const last = keys.pop();
  let o = obj;
  for (const k of keys) o = o[k] = o[k] || {};
  o[last] = value;
}

// A run of fields inside a form that can be swapped for another.
export function group(specs) {
  const g = { node: h('div', { class: 'group' }), fields: [] };
  g.replace = (next) => {
    g.fields = next.map(field);
    g.node.replaceChildren(...g.fields.map((f) => f.node));
  };
  g.replace(specs);
  return g;
}

// A form over groups of fields: the browser's checks first, then the API's.
// A 422's violations are shown next to the fields they name (conditions.days[2]
// next to conditions.days), the rest and the API's message above the form.
export function makeForm({ groups, submitLabel, onSubmit, buttons, cls = 'form', validate }) {
  const summary = h('div', { class: 'notice error', role: 'alert', tabindex: '-1', hidden: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, submitLabel);
  const node = h('form', { novalidate: true, class: cls }, summary, groups.map((g) => g.node), h('div', { class: 'actions' }, submit, buttons));
  const all = () => groups.flatMap((g) => g.fields);

  function clear() {
    summary.hidden = true;
    for (const f of all()) f.setError(null);
  }

  function find(name) {
    for (let n = name, prev; n && n !== prev; prev = n, n = n.replace(/(\[\d+\]|\.[^.[\]]*)$/, '')) {
      const f = all().find((x) => x.name === n);
      if (f) return f;
    }
    return null;
  }

  function show(violations, message) {
    const placed = new Map();
    const rest = [];
    for (const v of violations) {
      const f = find(String(v.field || ''));
      if (!f) { rest.push(v); continue; }
      const sub = v.field.slice(f.name.length).replace(/^\./, '');
      placed.set(f, [...(placed.get(f) || []), sub && !v.message.startsWith(sub) ? `${sub}: ${v.message}` : v.message]);
    }
    for (const [f, list] of placed) f.setError(list.join(' '));
    put(summary, h('p', {}, message || 'Some values were refused.'),
      rest.length ? h('ul', {}, rest.map((v) => h('li', {}, v.field ? `${v.field}: ${v.message}` : v.message))) : null);
    summary.hidden = false;
    const first = all().find((f) => placed.has(f));
    (first && first.control ? first.control : summary).focus();
  }

  node.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear();
    const body = {};
    const problems = [];
    for (const f of all()) {
      const [v, problem] = f.read();
      if (problem) problems.push({ field: f.name, message: problem });
      else if (v !== undefined) setPath(body, f.name, v);
    }
    if (!problems.length && validate) problems.push(...validate(body));
    if (problems.length) {
      show(problems, problems.length === 1 ? 'Check the highlighted field.' : `Check the ${problems.length} highlighted fields.`);
      return;
    }
    submit.disabled = true;
    try {
      await onSubmit(body);
    } catch (err) {
      if (err.name === 'AbortError') return;
      if (!(err instanceof ApiError)) throw err;
      show(err.violations, err.message);
    } finally {
      submit.disabled = false;
    }
  });

  return {
    node,
    submit,
    clear,
    show,
    fill(values) { for (const f of all()) f.fill(getPath(values || {}, f.name)); },
    field: (name) => all().find((f) => f.name === name),
  };
}

// ---- events -------------------------------------------------------------------

// A sealed personal field reads as its opened value, or [erased] (docs/privacy.md).
export const readable = (e, k) => (e.personal && k in e.personal ? e.personal[k] : e[k]);
const actorOf = (e) => (e.actor_name ? `${readable(e, 'actor_name')} (${e.actor_id})` : e.actor_id);

const COLUMNS = {
  seq: ['Seq', (e) => String(e.seq ?? '')],
  time: ['Time', (e) => when(e.occurred_at || e.received_at)],
  action: ['Action'],
  actor: ['Actor', actorOf],
  resource: ['Resource', (e) => [e.resource, e.resource_id].filter(Boolean).join(' / ')],
  tenant: ['Tenant', (e) => e.tenant_id],
  country: ['Country', (e) => [e.ip_country, e.ip_city].filter(Boolean).join(' · ')],
};

// A table of events; open(event) makes the action cell's link or button, and a
// click anywhere else on the row follows it.
export function eventsTable(events, open, { columns = Object.keys(COLUMNS), caption } = {}) {
  const t = h('table', { class: 'events' },
    caption ? h('caption', { class: 'visually-hidden' }, caption) : null,
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, COLUMNS[c][0])))),
    h('tbody', {}, events.map((e) => h('tr', { class: 'clickable' },
      columns.map((c) => h('td', { class: `col-${c}` }, c === 'action' ? open(e) : COLUMNS[c][1](e)))))));
  t.addEventListener('click', (ev) => {
    const row = !ev.target.closest('a, button') && ev.target.closest('tr.clickable');
    if (row) row.querySelector('a, button').click();
  });
  return h('div', { class: 'table-wrap' }, t);
}

const FIRST = ['id', 'action', 'action_category', 'occurred_at', 'received_at', 'actor_id', 'actor_name', 'actor_type',
  'resource', 'resource_id', 'resource_name', 'tenant_id', 'session_id', 'ip_address', 'ip_country', 'ip_city',
  'user_agent', 'idempotency_key', 'version', 'schema_violation', 'workspace_id'];
const APART = ['seq', 'hash', 'prev_hash', 'metadata', 'targets', 'personal'];
const shown = (v) => v !== undefined && v !== null;

// Every field of one event: its place in the chain first, then the fields,
// then metadata and targets as formatted JSON.
export function eventDetail(e, level = 2) {
  const hx = `h${level}`;
  const keys = [...FIRST, ...Object.keys(e).filter((k) => !FIRST.includes(k) && !APART.includes(k))].filter((k) => shown(e[k]));
  return h('div', { class: 'event-detail' },
    h('section', { class: 'chain', 'aria-label': 'Position in the hash chain' },
      dl([['Seq', h('strong', { class: 'seq' }, String(e.seq))], ['Hash', code(e.hash, 'hash')], ['Previous hash', code(e.prev_hash, 'hash')]])),
    h(hx, {}, 'Fields'),
    dl(keys.map((k) => [k, k.endsWith('_at') ? h('span', {}, code(e[k]), ' ', h('span', { class: 'muted' }, `(${fmtTime(e[k])})`))
      : typeof e[k] === 'object' ? JSON.stringify(e[k]) : String(e[k])])),
    e.personal ? [h(hx, {}, 'Personal fields'),
      h('p', { class: 'muted' }, 'Sealed in the chain under the subject\'s key; shown opened, or [erased] once the subject was erased.'),
      dl(Object.entries(e.personal).map(([k, v]) => [k, String(v)]))] : null,
    ['metadata', 'targets'].filter((k) => shown(e[k])).map((k) => [
      h(hx, {}, k === 'metadata' ? 'Metadata' : 'Targets'),
      h('pre', { class: 'json', tabindex: '0' }, JSON.stringify(e[k], null, 2))]));
}

export const pager = ({ newer, older, label = 'Pages' }) => h('nav', { class: 'pager', 'aria-label': label },
  button('← Newer', newer, { disabled: !newer }), button('Older →', older, { disabled: !older }));
