// Events: the explorer (filters in the URL hash, cursor paging), one event's
// detail, and a session's timeline.
import { query } from './api.js';
import { announce, code, errorBox, eventDetail, eventsTable, group, h, makeForm, notice, pager, readable, when } from './ui.js';

const COUNTRY = (v) => (/^[A-Za-z]{2}$/.test(v) ? null : 'ip_country must be a two-letter ISO 3166 country code');

// The query API's filters; the exports page uses the same.
export const FILTERS = [
  { name: 'action', label: 'Action', help: 'Exact, or with * wildcards: document.*' },
  { name: 'actor_id', label: 'Actor ID' },
  { name: 'tenant_id', label: 'Tenant ID' },
  { name: 'session_id', label: 'Session ID' },
  { name: 'resource', label: 'Resource' },
  { name: 'resource_id', label: 'Resource ID' },
  { name: 'ip_country', label: 'Country', help: 'Two letters, e.g. DE', check: COUNTRY },
  { name: 'search', label: 'Search', help: 'Text in actor, action or resource' },
  { name: 'from', label: 'From (local time)', type: 'datetime' },
  { name: 'to', label: 'To (local time)', type: 'datetime', help: 'Exclusive' },
];
const NAMES = FILTERS.map((f) => f.name);
const PAGE = 50;

export function filtersOf(params) {
  const out = {};
  for (const n of NAMES) if (params.get(n)) out[n] = params.get(n);
  return out;
}

export const eventLink = (e) => h('a', { href: `#/event/${encodeURIComponent(e.id)}` }, e.action);

// Cursors of the pages before the current one, so "Newer" can go back; kept
// while the filters stay the same.
const paging = { filters: null, stack: [] };

export async function explorer(ctx) {
  const filters = filtersOf(ctx.params);
  const cursor = ctx.params.get('cursor') || '';
  const key = JSON.stringify(filters);
  if (paging.filters !== key) Object.assign(paging, { filters: key, stack: [] });
  const to = (c) => `#/events${query({ ...filters, cursor: c })}`;

  const form = makeForm({
    groups: [group(FILTERS)],
    cls: 'form filters',
    submitLabel: 'Apply filters',
    buttons: [
      h('button', { type: 'button', onclick: () => ctx.go('#/events') }, 'Clear'),
    ],
    async onSubmit(body) { ctx.go(`#/events${query(body)}`); },
  });
  form.fill(filters);
  const results = h('section', { 'aria-labelledby': 'results-h' }, h('h2', { id: 'results-h' }, 'Results'));
  ctx.root.append(h('section', { 'aria-label': 'Filters' }, form.node), results);

  let page;
  try {
    page = await ctx.api('/api/v1/events', { params: { ...filters, order: byTime(filters), cursor, limit: PAGE } });
  } catch (err) {
    if (err.status === 422) { form.show(err.violations, err.message); results.append(errorBox(err)); return; }
    throw err;
  }
  const { data, pagination } = page;
  const links = [
    h('a', { href: `#/exports${query(filters)}` }, 'Export these events'),
    filters.tenant_id ? h('a', { href: `#/settings/viewer${query({ tenant_id: filters.tenant_id })}` }, `Viewer link for tenant ${filters.tenant_id}`) : null,
  ];
  const newest = byTime(filters) ? 'latest occurred first' : 'newest first';
  const count = `${data.length} event${data.length === 1 ? '' : 's'}${cursor ? ' (older page)' : ''}, ${newest}`;
  results.append(
    h('p', { class: 'toolbar' }, h('span', { class: 'muted' }, `${count}.`), ...links),
    data.length ? eventsTable(data, eventLink, { caption: `Events, ${newest}` }) : notice('No event matches these filters.'),
    pager({
      newer: cursor ? () => ctx.go(to(paging.stack.pop() || '')) : null,
      older: pagination.next_cursor ? () => { paging.stack.push(cursor); ctx.go(to(pagination.next_cursor)); } : null,
    }));
  announce(`${count}.`);
}

export async function detail(ctx) {
  const [id] = ctx.args;
  const e = await ctx.api(`/api/v1/events/${encodeURIComponent(id)}`);
  ctx.title(`Event ${e.action}`);
  const links = [
    h('a', { href: `#/events${query({ actor_id: e.actor_id })}` }, 'All events of this actor'),
    e.session_id ? h('a', { href: `#/session/${encodeURIComponent(e.session_id)}` }, 'Session timeline') : null,
    e.tenant_id ? h('a', { href: `#/events${query({ tenant_id: e.tenant_id })}` }, 'All events of this tenant') : null,
    e.resource_id ? h('a', { href: `#/events${query({ resource_id: e.resource_id })}` }, 'All events of this resource') : null,
    h('a', { href: '#/events' }, 'Back to events'),
  ];
  ctx.root.append(h('nav', { class: 'toolbar', 'aria-label': 'Related' }, links), eventDetail(e));
}

const SESSION_PAGES = 10;

export async function session(ctx) {
  const [sid] = ctx.args;
  ctx.title(`Session ${sid}`);
  const events = [];
  let cursor = '';
  let more = false;
  for (let i = 0; i < SESSION_PAGES; i += 1) {
    const page = await ctx.api('/api/v1/events', { params: { session_id: sid, limit: 100, cursor } });
    events.push(...page.data);
    cursor = page.pagination.next_cursor;
    more = Boolean(cursor);
    if (!more) break;
  }
  events.reverse();
  ctx.root.append(
    h('p', { class: 'toolbar' },
      h('span', { class: 'muted' }, more ? `The newest ${events.length} events, oldest first.` : `${events.length} events, oldest first.`),
      h('a', { href: `#/events${query({ session_id: sid })}` }, 'Open in the explorer')),
    events.length
      ? h('ol', { class: 'timeline' }, events.map((e) => h('li', {},
        h('p', { class: 'when' }, when(e.occurred_at || e.received_at), h('span', { class: 'muted' }, ` · seq ${e.seq}`)),
        h('p', {}, eventLink(e), ' by ', e.actor_name ? `${readable(e, 'actor_name')} (${e.actor_id})` : e.actor_id,
          e.resource ? [' on ', [e.resource, e.resource_id].filter(Boolean).join(' / ')] : null),
        e.ip_address ? h('p', { class: 'muted' }, code(readable(e, 'ip_address')), e.ip_country ? ` ${[e.ip_country, e.ip_city].filter(Boolean).join(' · ')}` : '') : null)))
      : notice('No event has this session_id.'));
}

// A time range is read in occurred_at order: the API then walks the window's
// index instead of every newer event (docs/console.md).
function byTime(filters) {
  return filters.from || filters.to ? 'occurred' : undefined;
}
