// The tenant viewer: one tenant's events, read-only, with the viewer token
// from the page's address. Made to be framed; it links nowhere else.
import { fileName, fmtTime, request } from './api.js';
import { announce, errorBox, eventDetail, eventsTable, group, h, makeForm, notice, pager, readable } from './ui.js';

const token = new URLSearchParams(location.search).get('token');
const main = document.getElementById('main');
const api = (path, opts) => request(token, path, opts);
const state = { filters: {}, cursor: '', stack: [] };
const listView = h('section', { 'aria-labelledby': 'list-h' }, h('h2', { id: 'list-h', class: 'visually-hidden' }, 'Events'));
const results = h('div');
let form;

function stop(err) {
  const expired = err.code === 'token_expired';
  document.getElementById('scope').textContent = '';
  main.replaceChildren(h('div', { class: 'notice warn', role: 'alert' },
    h('h2', {}, expired ? 'This link has expired' : 'This link cannot be used'),
    h('p', {}, err.message),
    h('p', {}, 'Ask for a new link where you found this one.')));
}

function fail(err) {
  if (err.status === 401) stop(err);
  else if (err.status === 422) form.show(err.violations, err.message);
  else results.replaceChildren(errorBox(err));
}

function openDetail(e, opener) {
  const back = h('button', { type: 'button' }, '← Back to the list');
  const heading = h('h2', { tabindex: '-1' }, `${e.action} by ${readable(e, 'actor_name') || e.actor_id}`);
  const view = h('section', { class: 'detail-view' }, back, heading, eventDetail(e, 3));
  back.addEventListener('click', () => {
    view.remove();
    listView.hidden = false;
    opener.focus();
  });
  listView.hidden = true;
  main.append(view);
  heading.focus();
}

function actionButton(e) {
  const b = h('button', { type: 'button', class: 'link' }, e.action);
  b.addEventListener('click', () => openDetail(e, b));
  return b;
}

async function load() {
  results.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    const byTime = state.filters.from || state.filters.to ? 'occurred' : undefined;
    const page = await api('/api/v1/viewer/events', { params: { ...state.filters, order: byTime, cursor: state.cursor, limit: 25 } });
    const go = (cursor, stack) => { Object.assign(state, { cursor, stack }); load(); };
    results.replaceChildren(
      page.data.length ? eventsTable(page.data, actionButton, { columns: ['time', 'action', 'actor', 'resource', 'country'], caption: 'Events, newest first' })
        : notice('No event matches.'),
      pager({
        newer: state.cursor ? () => go(state.stack[state.stack.length - 1] || '', state.stack.slice(0, -1)) : null,
        older: page.pagination.next_cursor ? () => go(page.pagination.next_cursor, [...state.stack, state.cursor]) : null,
      }));
    announce(`${page.data.length} events shown.`);
  } catch (err) {
    fail(err);
  }
}

async function downloadCsv(button) {
  button.disabled = true;
  try {
    const res = await api('/api/v1/viewer/events.csv', { params: state.filters, raw: true });
    const blob = await res.blob();
    const a = h('a', { href: URL.createObjectURL(blob), download: fileName(res, 'audit-log.csv') });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 30000);
    announce('CSV downloaded.');
  } catch (err) {
    fail(err);
  } finally {
    button.disabled = false;
  }
}

async function start() {
  if (!token) {
    main.replaceChildren(notice('This page shows an audit log through a viewer link (with ?token=… in its address). Ask for a link where you found this page.', 'warn'));
    return;
  }
  let scope;
  try {
    scope = await api('/api/v1/viewer/scope');
  } catch (err) {
    if (err.status === 401 || err.status === 403) stop(err);
    else main.replaceChildren(errorBox(err));
    return;
  }
  document.getElementById('scope').textContent = [
    scope.workspace_name, `tenant ${scope.tenant_id}`, scope.actor_id ? `actor ${scope.actor_id}` : null,
    `link valid until ${fmtTime(scope.expires_at)}`,
  ].filter(Boolean).join(' · ');
  const csv = h('button', { type: 'button' }, 'Download CSV');
  csv.addEventListener('click', () => downloadCsv(csv));
  form = makeForm({
    groups: [group([
      { name: 'action', label: 'Action', placeholder: 'document.*' },
      scope.actor_id ? null : { name: 'actor_id', label: 'Actor ID' },
      { name: 'search', label: 'Search' },
      { name: 'from', label: 'From', type: 'datetime' },
      { name: 'to', label: 'To', type: 'datetime' },
    ].filter(Boolean))],
    cls: 'form filters compact',
    submitLabel: 'Apply',
    buttons: [csv],
    async onSubmit(body) {
      Object.assign(state, { filters: body, cursor: '', stack: [] });
      await load();
    },
  });
  listView.append(form.node, results);
  main.replaceChildren(listView);
  await load();
}

start();
